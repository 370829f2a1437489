"""Pretrained weights for ladd models: torchvision's or timm's state-dict layout, or ladd's own.

`load_weights(model, path)` reads a weights file — `.pth`/`.pt`/`.bin` through
`torch.load(..., weights_only=True, map_location="cpu")` (so a pickle holding anything but tensors
and plain containers is refused before it can run code), or `.safetensors` — maps its parameter
names onto the model's, checks every name and shape, loads it and returns the file's SHA-256.

Layouts (chosen by which one the file's names match best):

- `ladd`: the model's own `state_dict()` names (what ladd itself saves).
- `torchvision`: torchvision's ResNet names, which timm's ResNet-18/34 share exactly (conv1, bn1,
  layer{1-4}.{i}.conv1/bn1/conv2/bn2, downsample.0/1, fc). They map onto ladd's ResNet18 as
  conv1 → features.0, bn1 → features.1, layerL.i → the i-th BasicBlock of stage L (its
  conv1/bn1/conv2/bn2 → body.0/1/3/4, downsample.0/1 → shortcut.0/1), fc → classifier. ImageNet
  weights need `resnet18-imagenet` (torchvision's 7×7/2 stem + max-pool; `resnet18-bn` has the CIFAR
  3×3 stem, and its conv1.weight shape differs). timm's deep-stem variants (resnet18d: conv1.0, …)
  are not this layout and are refused by name.

Checks: every name the model needs must be in the file with its shape; a name the model does not
have is refused; the first problem is one LaddError line naming the key and both shapes. A missing
BN `num_batches_tracked` is the one exception (files saved before PyTorch 0.4.1, like torchvision's first resnet18 download, lack it; it
only matters when a BN with momentum=None trains): the model keeps its own.

Head selection (`classes`): an ImageNet head has 1000 rows; for an ImageNet subset (ImageNette,
ImageWoof, a class folder of WNIDs) pass the row of each of the dataset's classes, in the dataset's
class order — for class folders named by WNID, that is each WNID's index in the sorted list of the
1000 ImageNet WNIDs (ImageNette: 0,217,482,491,497,566,569,571,574,701). Rows are taken from the
head's weight and bias before the shape check, so the head then has one row per dataset class.

Input normalization: ImageNet weights expect x = (pixel/255 − IMAGENET_MEAN) / IMAGENET_STD, while
every ladd stage feeds a model (pixel/255 − dataset.mean) / dataset.std. `renormalize` makes the
model convert its input from the dataset's normalization to the weights' exactly (a per-channel
affine map before the first layer), so nothing else in ladd changes; `ladd.experts.pretrained`
applies it to torchvision/timm layouts (ladd-layout files were trained by ladd on the dataset's
own normalization and are left as they are).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ladd.core.errors import ArtifactError, ConfigError
from ladd.core.io import load_safetensors, sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's and timm's IMAGENET_DEFAULT_MEAN / _STD
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors")
OPTIONAL = ("num_batches_tracked",)  # may be absent from a file (see the module docstring)
EXTERNAL = ("torchvision",)  # layouts of other libraries (their normalization is ImageNet's)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, by name, on the CPU; anything else is one LaddError line.

    A checkpoint that wraps its state dict (`{"state_dict": …}` or `{"model": …}`, as training
    scripts save) is unwrapped, and DataParallel's `module.` prefix is removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ArtifactError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix not in TORCH_SUFFIXES:
        raise ArtifactError(f"weights file {path} is not {', '.join(SUFFIXES)}: save the state dict with torch.save or safetensors")
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:  # weights_only refused an object that is not a tensor or plain container
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", f"{e} {e.__context__}")
        if found is None:
            raise ArtifactError(
                f"{path} is not a readable torch weights file (torch.load weights_only: {_first_line(e.__context__ or e)})"
            ) from None
        raise ArtifactError(
            f"{path} holds objects other than tensors ({found.group(1)}), which are not loaded (torch.load "
            f"weights_only refuses them): save only the state dict, e.g. torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError, MemoryError) as e:
        raise ArtifactError(f"{path} is not a readable torch weights file ({type(e).__name__}: {_first_line(e)})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj:
        raise ArtifactError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors (name → tensor)")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ArtifactError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor: save only the state dict")
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return dict(obj)


def torchvision_names(model: nn.Module) -> dict[str, str] | None:
    """ladd state-dict name → torchvision/timm name for every entry of `model`, or None when the
    model has no such layout (only ladd's ResNet18 family has)."""
    from ladd.models.resnet import BasicBlock, ResNet18

    if not isinstance(model, ResNet18):
        return None
    prefix: dict[str, str] = {"classifier": "fc"}
    inner = {
        "body.0": "conv1",
        "body.1": "bn1",
        "body.3": "conv2",
        "body.4": "bn2",
        "shortcut.0": "downsample.0",
        "shortcut.1": "downsample.1",
    }
    stage, index, width, stem = 0, 0, None, ["conv1", "bn1"]
    for i, module in enumerate(model.features):
        if isinstance(module, BasicBlock):
            out = module.body[0].out_channels
            stage, index = (stage + 1, 0) if out != width else (stage, index + 1)
            width = out
            for name, ext in inner.items():
                prefix[f"features.{i}.{name}"] = f"layer{stage}.{index}.{ext}"
        elif stem and module.state_dict() and (stem[0] != "conv1" or isinstance(module, nn.Conv2d)):
            prefix[f"features.{i}"] = stem.pop(0)  # the stem conv, then the norm after it
    out = {}
    for key in model.state_dict():
        module, _, leaf = key.rpartition(".")
        if module not in prefix:
            raise AssertionError(f"no torchvision name for {key}")  # a ResNet18 change this mapping missed
        out[key] = f"{prefix[module]}.{leaf}"
    return out


def layouts(model: nn.Module) -> dict[str, dict[str, str]]:
    """Every layout `model` can be loaded from: name → (ladd name → file name)."""
    own = {k: k for k in model.state_dict()}
    tv = torchvision_names(model)
    return {"ladd": own, **({"torchvision": tv} if tv is not None else {})}


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _select_head(state: dict[str, torch.Tensor], head: list[str], classes: Sequence[int], path: Path) -> dict[str, torch.Tensor]:
    """`state` with only rows `classes` of the head's weight and bias (file names `head`)."""
    rows = state[head[0]].shape[0] if head[0] in state else None
    if rows is None:
        return state  # reported as missing by the name check
    bad = next((c for c in classes if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < rows), None)
    if bad is not None:
        raise ConfigError(f"head row {bad!r} is outside 0..{rows - 1}: the head {head[0]} of {path} has {rows} rows")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"the head rows {list(classes)} repeat a row: give each dataset class its own row")
    index = torch.tensor(list(classes), dtype=torch.long)
    return {
        **state,
        **{k: state[k].index_select(0, index) for k in head if k in state and state[k].ndim >= 1 and state[k].shape[0] == rows},
    }


def map_state(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path, classes: Sequence[int] | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """(`state` renamed to `model`'s names and checked, the layout it was in); see the module docstring."""
    options = layouts(model)
    overlap = {name: len(set(names.values()) & set(state)) for name, names in options.items()}
    layout = max(overlap, key=overlap.get)  # ties: ladd (first)
    names = options[layout]
    want = model.state_dict()
    what = type(model).__name__
    if overlap[layout] == 0:
        raise ConfigError(
            f"{path}: none of its {len(state)} names (the first: {next(iter(state))}) is a {what} name in "
            f"{' or '.join(options)} layout: it holds the weights of another model"
        )
    if classes is not None:
        head = [names[k] for k in ("classifier.weight", "classifier.bias") if k in names]
        state = _select_head(state, head, list(classes), path)
    wanted_file_names = set(names.values())
    for key, ext in names.items():
        target = want[key]
        if ext not in state:
            if key.rpartition(".")[2] in OPTIONAL:
                continue
            raise ConfigError(
                f"{path} ({layout} layout) has no {ext} (shape {_shape(target)}), which {what} needs: it holds the weights of another model"
            )
        got = state[ext]
        if tuple(got.shape) != tuple(target.shape):
            why = "it holds the weights of another architecture or number of input channels"
            if key.startswith("classifier.") and got.ndim >= 1 and target.ndim >= 1 and got.shape[0] != target.shape[0]:
                why = (
                    f"its head has {got.shape[0]} classes, the dataset {target.shape[0]}: pick the head rows of the dataset's "
                    f"classes (each one's ImageNet index, in the dataset's class order)"
                    if classes is None
                    else f"{len(classes)} head rows were picked for {target.shape[0]} dataset classes"
                )
            raise ConfigError(f"{path} ({layout} layout): {ext} has shape {_shape(got)}, {what} needs {_shape(target)}: {why}")
        if got.is_floating_point() != target.is_floating_point():
            raise ConfigError(f"{path} ({layout} layout): {ext} is {got.dtype}, {what} needs {target.dtype}")
    extra = [k for k in state if k not in wanted_file_names]
    if extra:
        raise ConfigError(
            f"{path} ({layout} layout) has {extra[0]} (shape {_shape(state[extra[0]])}), which {what} does not"
            + (f" (and {len(extra) - 1} more unexpected names)" if len(extra) > 1 else "")
            + ": it holds the weights of another model"
        )
    mapped = {key: state[ext].to(want[key].dtype) if ext in state else want[key] for key, ext in names.items()}
    return mapped, layout


def apply_weights(model: nn.Module, path: Path, classes: Sequence[int] | None = None) -> tuple[str, str]:
    """Load the weights file into `model` (in place); returns (the file's SHA-256, its layout)."""
    path = Path(path).expanduser()
    state = read_state(path)
    mapped, layout = map_state(model, state, path, classes)
    model.load_state_dict(mapped)
    return sha256(path), layout


def load_weights(model: nn.Module, path: Path, classes: Sequence[int] | None = None) -> str:
    """Load a torchvision-, timm- or ladd-layout weights file into `model`, checked name by name and
    shape by shape (module docstring), with the head's rows `classes` when given; returns the file's SHA-256."""
    return apply_weights(model, path, classes)[0]


def infer_model(path: Path, state: dict[str, torch.Tensor] | None = None) -> str | None:
    """The ladd model a torchvision/timm-layout file is for (its names and stem say), else None
    (ladd-layout files and unknown layouts: the model must be named)."""
    from ladd.models import build_model

    state = read_state(path) if state is None else state
    conv1, fc = state.get("conv1.weight"), state.get("fc.weight")
    if conv1 is None or fc is None or conv1.ndim != 4 or fc.ndim != 2 or tuple(conv1.shape[2:]) != (7, 7):
        return None
    model = build_model("resnet18-imagenet", channels=conv1.shape[1], num_classes=fc.shape[0], im_size=(32, 32))
    names = set(torchvision_names(model).values())
    required = {n for n in names if n.rpartition(".")[2] not in OPTIONAL}
    return "resnet18-imagenet" if required <= set(state) <= names else None


def renormalize(
    model: nn.Module,
    data_mean: Sequence[float],
    data_std: Sequence[float],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> nn.Module:
    """Make `model` take inputs normalized with the dataset's (data_mean, data_std) while its
    weights see them normalized with (mean, std): x ↦ x·(data_std/std) + (data_mean − mean)/std,
    per channel, before `model.features` (so `forward` and `embed` both see it). The two factors
    are non-persistent buffers: they follow `.to(device)` and stay out of `state_dict()`."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no `features` to renormalize the input of")
    d_mean, d_std, w_mean, w_std = (torch.tensor([float(v) for v in t]) for t in (data_mean, data_std, mean, std))
    if not (len(d_mean) == len(d_std) == len(w_mean) == len(w_std)):
        raise ConfigError(f"the dataset has {len(d_mean)} channels, the weights' normalization {len(w_mean)}: they cannot match")
    features.register_buffer("input_scale", (d_std / w_std).view(1, -1, 1, 1), persistent=False)
    features.register_buffer("input_shift", ((d_mean - w_mean) / w_std).view(1, -1, 1, 1), persistent=False)
    features.register_forward_pre_hook(_renormalize_input)
    return model


def _renormalize_input(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    return (x * module.input_scale + module.input_shift, *rest)
