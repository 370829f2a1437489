"""The observer of LIC and RDED: a trained network that scores real images or patches, supplies
the features LIC's compensation matches, and gives the region soft labels.

By default it is an expert from the expert cache (`ExpertConfig`, trained on the source set, its
class order and normalization checked); `observer_checkpoint` loads any safetensors state dict the
model registry can build instead, and `observer_weights` a pretrained weights file (torchvision/timm
ResNet-18 layout or ladd's, e.g. ImageNet weights as RDED and LIC use; `observer_classes` picks the
head rows of an ImageNet subset's classes; `ladd.experts.pretrained`). Either way its accuracy on real training images is checked
before distilling: an observer at chance (RDED users' class-order mismatch, issues #3/#4/#6/#10)
would make every score and label meaningless, so it is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ladd.core import dist
from ladd.core.checkpoint import restore_weights
from ladd.core.errors import ArtifactError, ConfigError, DataError, LaddError
from ladd.core.io import sha256
from ladd.core.limits import MAX_COUNT, MAX_LR, MAX_SEED
from ladd.core.runtime import Runtime, generator
from ladd.core.types import Dataset, normalize
from ladd.cost import flops
from ladd.data.stream import gather
from ladd.experts import ExpertConfig, build_for, ensure_expert, load_expert
from ladd.images.mosaic import expand
from ladd.train.loop import accuracy


class ObserverParams(BaseModel):
    """Observer fields shared by the LIC and RDED recipes (defaults: the expert recipe of ladd's labeler)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    observer_model: str = "convnet"
    observer_epochs: int = Field(10, ge=1, le=MAX_COUNT)  # an expert trained this long (SGD lr 0.01, DSA), its last checkpoint
    observer_lr: float = Field(0.01, gt=0, le=MAX_LR)
    observer_seed: int = Field(0, ge=0, le=MAX_SEED)
    observer_checkpoint: str | None = None  # a safetensors state dict of observer_model instead of the cache
    observer_weights: str | None = None  # pretrained weights (torchvision/timm/ladd layout, `ladd.experts.pretrained`) instead of the cache
    observer_classes: list[int] | None = None  # with observer_weights: the head rows of the dataset's classes (ImageNet subsets)
    check_per_class: int = Field(50, ge=1, le=MAX_COUNT)  # training images per class for the observer-at-chance check


def chance_floor(num_classes: int) -> float:
    """Accuracy an observer must beat: 1.5× chance (a class-order mismatch gives chance, ~1/C)."""
    return 1.5 / num_classes


def observer_check(model: nn.Module, dataset: Dataset, per_class: int) -> float:
    """Accuracy on up to `per_class` random training images of each class (never the test split)."""
    gen = generator(0)
    labels = dataset.train.labels
    idx = torch.cat(
        [
            m[torch.randperm(len(m), generator=gen)[:per_class]]
            for m in ((labels == c).nonzero().flatten() for c in range(dataset.num_classes))
        ]
    )
    return accuracy(model, gather(dataset.train.images, idx), labels[idx], dataset.mean, dataset.std)


def load_observer(dataset: Dataset, p: ObserverParams, runtime: Runtime) -> tuple[nn.Module, dict]:
    """The observer in eval mode with frozen weights, and its provenance for the manifest."""
    if p.observer_weights is not None:
        model, provenance = _pretrained_observer(dataset, p, runtime)
    elif p.observer_checkpoint is None:
        cfg = ExpertConfig(model=p.observer_model, epochs=p.observer_epochs, lr=p.observer_lr, seed=p.observer_seed)
        directory, info = ensure_expert(dataset, cfg, None, runtime)
        model, provenance = load_expert(directory, p.observer_epochs, dataset, runtime)
        provenance.pop("test_acc")  # measured on the test split: not a basis for anything here
        provenance["samples_seen"] = info["samples_seen"]
    else:
        path = Path(p.observer_checkpoint).expanduser()
        if not path.is_file():
            raise ArtifactError(f"observer_checkpoint {path} does not exist: give a .safetensors state dict of {p.observer_model}")
        model = build_for(dataset, p.observer_model, 0)
        try:
            restore_weights(model, path)
        except LaddError as e:
            raise type(e)(
                f"observer_checkpoint {path} is not a {p.observer_model} for {dataset.name} "
                f"{list(dataset.shape)} with {dataset.num_classes} classes ({e})"
            ) from e
        model.to(runtime.device).eval()
        provenance = {"model": p.observer_model, "checkpoint": str(path), "checkpoint_sha256": sha256(path), "samples_seen": 0}
    model.requires_grad_(False)
    acc = dist.first(lambda: observer_check(model, dataset, p.check_per_class))  # rank 0 measures, every rank gets it
    floor = chance_floor(dataset.num_classes)
    if acc < floor:
        raise DataError(
            f"the observer classifies {100 * acc:.1f}% of {dataset.name}'s training images correctly, at chance "
            f"(needs >= {100 * floor:.1f}%): its class order or normalization does not match the data; "
            f"train it on {dataset.name} or fix the class order"
        )
    return model, {**provenance, "train_check_acc": round(acc, 6)}


def _pretrained_observer(dataset: Dataset, p: ObserverParams, runtime: Runtime) -> tuple[nn.Module, dict]:
    """observer_weights: a weights file; its model is recognized from the file (torchvision/timm
    ResNet-18 → resnet18-imagenet), else observer_model. Its input normalization is converted
    (`ladd.experts.pretrained`)."""
    from ladd.experts.pretrained import load_pretrained, pretrained_config
    from ladd.models.weights import infer_model

    if p.observer_checkpoint is not None:
        raise ConfigError("give observer_weights or observer_checkpoint, not both")
    path = Path(p.observer_weights).expanduser()
    model_name = (infer_model(path) if path.is_file() else None) or p.observer_model
    cfg = pretrained_config(
        path, model_name, p.observer_classes, option="observer_weights", model_option="observer_model", classes_option="observer_classes"
    )
    model, prov = load_pretrained(dataset, cfg, runtime)
    keep = ("model", "weights", "weights_sha256", "checkpoint_sha256", "classes", "layout", "input_normalization", "directory")
    return model, {**{k: prov[k] for k in keep}, "samples_seen": 0}


def layer_names(model: nn.Module) -> list[str]:
    return ["embed"] + [name for name, _ in model.named_modules() if name]


def features(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Flattened output of `layer` (a module name, or `embed`: the features before the classifier)."""
    if layer == "embed":
        return model.embed(x)
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ConfigError(f"layer {layer!r} is not in the observer: valid layers are {', '.join(layer_names(model))}")
    out: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(lambda _m, _i, o: out.append(o))
    try:
        model(x)
    finally:
        handle.remove()
    return out[0].flatten(1)


@torch.no_grad()
def observer_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Per-image cross-entropy of the observer on normalized images (LIC's −s_i, RDED's patch score)."""
    return torch.cat([F.cross_entropy(model(xb), yb, reduction="none") for xb, yb in zip(x.split(batch_size), y.split(batch_size))])


def region_cost(model: nn.Module, shape: tuple[int, int, int], provenance: dict, tiles: int) -> dict:
    """FLOPs charged to the region labels, as for LADD's labels: observer training (0 for a given
    checkpoint) + one forward per tile; all of it made dense labels."""
    generation = flops.per_sample(model, shape, backward=False) * tiles
    return {
        "unit": flops.UNIT,
        "labeler_train": flops.training(model, shape, provenance["samples_seen"]),
        "label_generation": generation,
        "dense_generation": generation,
    }


@torch.no_grad()
def region_labels(model: nn.Module, pixels: torch.Tensor, mean, std, n: int, batch_size: int = 64) -> torch.Tensor:
    """B×n²×C soft labels, one per tile: the observer on each tile upsampled to full size — the
    views LADD's sub-sampler gives with (n, 1/n), so students read them as dense labels (Eq. 9).
    Under torchrun the ranks share the chunks (`dist.mine`, never re-cut) and gather them."""
    device = next(model.parameters()).device

    def label(chunk: torch.Tensor) -> torch.Tensor:
        v = expand(normalize(chunk.to(device), mean, std), n)
        return model(v.flatten(0, 1)).softmax(-1).view(len(chunk), n * n, -1).cpu()

    chunks = pixels.split(batch_size)
    return dist.concat({i: label(chunks[i]) for i in dist.mine(len(chunks))}, len(chunks))


def observer_params(manifest: dict) -> ObserverParams:
    """The observer settings an artifact's LIC or RDED images were made with: its recipe's, with
    the `--param` overrides it recorded."""
    images = manifest.get("images", {})
    params = {**((images.get("recipe") or {}).get("params") or {}), **(images.get("params") or {})}
    return ObserverParams(**{k: v for k, v in params.items() if k in ObserverParams.model_fields})


def relabel_regions(manifest: dict, pixels: torch.Tensor, dataset: Dataset, runtime: Runtime) -> tuple[torch.Tensor, dict, dict]:
    """Region labels of other images, made as the artifact's were: the observer that labelled it
    (loaded from its recorded settings, checked to be the same checkpoint) on the same tile grid,
    e.g. for a random real subset to compare the artifact with (DD-Ranking's IOR, ARS).
    Returns (regions, observer provenance, FLOPs), the arguments of `pipeline.with_region_labels`."""
    lab = manifest["labels"]
    observer, provenance = load_observer(dataset, observer_params(manifest), runtime)
    recorded = lab.get("observer", {}).get("checkpoint_sha256")
    if recorded is not None and provenance.get("checkpoint_sha256") != recorded:
        raise ArtifactError(
            f"the observer that labelled this artifact (checkpoint SHA-256 {recorded[:12]}) is not the one its "
            f"recorded settings give here ({provenance.get('checkpoint_sha256', '?')[:12]}): its region labels "
            f"cannot be reproduced on other images; distill the artifact again with this cache"
        )
    regions = region_labels(observer, pixels, dataset.mean, dataset.std, int(lab["subsample"]["n"]))
    return regions, provenance, region_cost(observer, dataset.shape, provenance, regions.shape[0] * regions.shape[1])
