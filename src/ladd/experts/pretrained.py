"""Pretrained teachers: a weights file (torchvision, timm or ladd layout; `ladd.models.weights`) as
the SRe²L/LPLD teacher (`--teacher-weights`: squeeze, recover, diversity, relabel), LADD's labeler
(`--labeler-weights`: label, run) or the LIC/RDED observer (`--param observer_weights=…`), in place
of an expert ladd trains. SRe²L, LPLD, RDED and LIC use ImageNet-pretrained torchvision ResNet-18s
in these roles.

A pretrained teacher is described, for one dataset, by a folder (like an expert's, with an
`expert.json` of kind `ladd-pretrained`; default a cache entry under `teachers/` keyed by the file's
SHA-256, the model, the head rows and the dataset): it records the weights file, its SHA-256, the
model and head rows, and the teacher's test accuracy once measured, and squeeze writes the
class-wise BN statistics beside it as for a trained teacher, so `--teacher-dir FOLDER` reuses it.
The weights file is read from where it was given (not copied) and must still have the recorded
SHA-256 when the teacher is loaded.

Provenance (manifests, relabel.json, BN statistics): {"weights": path, "weights_sha256": the file's
SHA-256, "checkpoint_sha256": the checksum of the weights as loaded — the file's SHA-256, or with a
head selection the SHA-256 of [file SHA-256, rows] (the same file with other rows is another
teacher) —, "model", "config", "classes", "layout", "input_normalization", "epoch": 0,
"test_acc", "directory"}, so every check that compares `checkpoint_sha256` (relabel resume, BN
statistics, recover checkpoints) works unchanged.

Normalization: torchvision/timm weights were trained on ImageNet-normalized inputs; ladd feeds
every model inputs normalized with the dataset's own mean/std (`dataset.mean`, `dataset.std`,
measured on its training split). Rather than refuse or silently mismatch, the teacher converts its
input from the dataset's normalization to ImageNet's, exactly (`ladd.models.weights.renormalize`;
recorded as `input_normalization`), so a pretrained teacher sees what it was trained on whatever
the dataset. What no conversion fixes is content: ImageNet weights only make sense on ImageNet
images (an ImageNet subset, at any resolution ≥ 32 px), and 3 channels are required (a grayscale
dataset is refused by conv1's shape). A 1000-way head on a subset needs the subset's rows
(`classes`); without them the head's shape is refused. The teacher's test accuracy is measured on
the dataset's test split and printed: a wrong class order shows as chance accuracy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ConfigDict, field_serializer
from torch import nn

from ladd.core.cache import entry
from ladd.core.errors import ArtifactError, ConfigError, DataError
from ladd.core.io import lock, sha256, write_json
from ladd.core.progress import log
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experts import INFO, build_for, read_info
from ladd.models import MODELS
from ladd.train.loop import accuracy
from ladd.models.weights import EXTERNAL, IMAGENET_MEAN, IMAGENET_STD, SUFFIXES, apply_weights, infer_model, renormalize

KIND = "ladd-pretrained"


class PretrainedConfig(BaseModel):
    """A weights file for a ladd model, with the head rows of the dataset's classes when its head is wider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str  # the file, as an absolute path
    model: str  # the ladd model (registry name) the weights are for, e.g. resnet18-imagenet
    classes: tuple[int, ...] | None = None  # head rows, one per dataset class in its order (e.g. ImageNet indices)

    @field_serializer("classes")
    def _as_list(self, classes):  # dumped as JSON reads it back, so a stored config compares equal
        return None if classes is None else list(classes)


def omit_none(dumped: dict, *names: str) -> dict:
    """`dumped` without the fields `names` that are None, so adding such an optional field to a
    config leaves the dumps (cache keys, stored settings) of configs that do not use it unchanged."""
    return {k: v for k, v in dumped.items() if not (k in names and v is None)}


def parse_classes(text: str | Sequence[int] | None, option: str) -> tuple[int, ...] | None:
    """Head rows from `0,217,482` (or a list of ints); None when not given."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise ConfigError(f"{option} {text!r} is not a comma-separated list of head rows, e.g. 0,217,482 (ImageNette's first three)")
        return tuple(int(p) for p in parts)
    rows = list(text)
    if not rows or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
        raise ConfigError(f"{option} {text!r} must be a non-empty list of head rows (whole numbers >= 0)")
    return tuple(rows)


def pretrained_config(
    weights: str | Path,
    model: str | None,
    classes,
    *,
    option: str = "--teacher-weights",
    model_option: str = "--teacher-model",
    classes_option: str = "--teacher-classes",
) -> PretrainedConfig:
    """The config of a weights file given on the command line: path resolved, model given or
    recognized from the file (torchvision/timm ResNet-18 → resnet18-imagenet), rows parsed."""
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise ArtifactError(f"{option} {path} does not exist: give a weights file ({', '.join(SUFFIXES)})")
    if model is None:
        model = infer_model(path)
        if model is None:
            raise ConfigError(
                f"{option} {path}: its names are not a torchvision/timm ResNet-18's, so name the ladd model "
                f"its weights are for with {model_option} (e.g. the model a ladd expert was trained as)"
            )
    return PretrainedConfig(weights=str(path), model=MODELS.canonical(model), classes=parse_classes(classes, classes_option))


def checkpoint_digest(file_sha: str, classes: Sequence[int] | None) -> str:
    """The teacher's checksum: the file's SHA-256, or with head rows, SHA-256 of [file SHA-256, rows]."""
    if classes is None:
        return file_sha
    return hashlib.sha256(json.dumps([file_sha, list(classes)]).encode()).hexdigest()


def _describe(dataset: Dataset, cfg: PretrainedConfig, file_sha: str) -> dict:
    return {
        "kind": KIND,
        "weights": cfg.weights,
        "weights_sha256": file_sha,
        "model": cfg.model,
        "classes": None if cfg.classes is None else list(cfg.classes),
        "config": cfg.model_dump(),
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "shape": list(dataset.shape),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "complete": True,
    }


def _check_dataset(info: dict, dataset: Dataset, directory: Path) -> None:
    same = (
        info.get("class_names") == list(dataset.class_names)
        and info.get("shape") == list(dataset.shape)
        and all(abs(a - b) <= 1e-4 for a, b in zip(info.get("mean", []) + info.get("std", []), list(dataset.mean) + list(dataset.std)))
    )
    if not same:
        raise DataError(
            f"the pretrained teacher in {directory} was set up for {info.get('dataset')} (other classes, class order, "
            f"image shape or normalization than {dataset.name}'s): use it with that dataset or another folder"
        )


def prepare(dataset: Dataset, cfg: PretrainedConfig, directory: str | Path | None = None) -> Path:
    """The folder describing this pretrained teacher for `dataset` (default: a cache entry), made if new."""
    path = Path(cfg.weights)
    if not path.is_file():
        raise ArtifactError(f"weights file {path} does not exist")
    file_sha = sha256(path)
    if directory is None:
        key = [
            dataset.name,
            list(dataset.class_names),
            list(dataset.shape),
            dataset.mean,
            dataset.std,
            cfg.model,
            file_sha,
            None if cfg.classes is None else list(cfg.classes),
        ]
        directory = entry("teachers", f"{dataset.name}-{cfg.model}-{file_sha[:12]}", key)
    directory = Path(directory).expanduser()
    with lock(directory, "preparing the teacher in"):
        info = read_info(directory)
        want = _describe(dataset, cfg, file_sha)
        if info:
            if info.get("kind") != KIND:
                raise ArtifactError(f"{directory} holds a trained expert, not a pretrained teacher: give another folder for the weights")
            _check_dataset(info, dataset, directory)
            if (info.get("weights_sha256"), info.get("model"), info.get("classes")) != (file_sha, cfg.model, want["classes"]):
                raise ArtifactError(
                    f"{directory} describes another pretrained teacher ({info.get('model')}, weights SHA-256 "
                    f"{str(info.get('weights_sha256'))[:12]}…, head rows {info.get('classes')}): give another folder"
                )
            if info.get("weights") != cfg.weights:  # the same file, moved or copied: read it from where it is now
                write_json(directory / INFO, {**info, "weights": cfg.weights, "config": cfg.model_dump()})
        else:  # refuse weights that do not fit before recording them
            apply_weights(build_for(dataset, cfg.model, 0), path, cfg.classes)
            directory.mkdir(parents=True, exist_ok=True)
            write_json(directory / INFO, want)
    return directory


def load_pretrained_dir(directory: Path, dataset: Dataset, runtime: Runtime) -> tuple[nn.Module, dict]:
    """The pretrained teacher described in `directory`, in eval mode on the runtime's device, and its
    provenance (module docstring); its test accuracy is measured once and recorded."""
    directory = Path(directory)
    info = read_info(directory)
    if info.get("kind") != KIND:
        raise ArtifactError(f"{directory / INFO} does not describe a pretrained teacher")
    _check_dataset(info, dataset, directory)
    path = Path(info["weights"])
    model = build_for(dataset, info["model"], 0)
    classes = info.get("classes")
    file_sha, layout = apply_weights(model, path, classes)
    if file_sha != info["weights_sha256"]:
        raise ArtifactError(
            f"{path} has changed since the teacher in {directory} was set up (SHA-256 {file_sha[:12]}…, "
            f"recorded {info['weights_sha256'][:12]}…): give the weights again in another folder"
        )
    if layout in EXTERNAL:
        renormalize(model, dataset.mean, dataset.std, IMAGENET_MEAN, IMAGENET_STD)
        norm = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "converted_from": "dataset"}
    else:
        norm = {"mean": list(dataset.mean), "std": list(dataset.std), "converted_from": None}
    model.to(runtime.device).eval()
    if "test_acc" not in info:
        acc = round(accuracy(model, dataset.test.images, dataset.test.labels, dataset.mean, dataset.std), 6)
        with lock(directory, "recording the teacher's accuracy in"):
            info = {**read_info(directory), "test_acc": acc}
            write_json(directory / INFO, info)
        log(
            f"pretrained {info['model']} from {path.name}: {100 * acc:.2f}% on {dataset.name}'s test split"
            + (" (near chance: check the head rows and their order)" if acc < 1.5 / dataset.num_classes else "")
        )
    provenance = {
        "directory": str(directory),
        "model": info["model"],
        "epoch": 0,
        "pretrained": True,
        "weights": str(path),
        "weights_sha256": file_sha,
        "checkpoint_sha256": checkpoint_digest(file_sha, classes),
        "classes": classes,
        "layout": layout,
        "input_normalization": norm,
        "config": info["config"],
        "test_acc": info["test_acc"],
        "samples_per_epoch": 0,
    }
    return model, provenance


def load_pretrained(
    dataset: Dataset, cfg: PretrainedConfig, runtime: Runtime, directory: str | Path | None = None
) -> tuple[nn.Module, dict]:
    """`prepare` + `load_pretrained_dir`: the teacher for `cfg` and its provenance."""
    return load_pretrained_dir(prepare(dataset, cfg, directory), dataset, runtime)
