"""Image stage: a method turns a source dataset into IPC images per class with hard labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from ladd.core.errors import ConfigError
from ladd.core.registry import Registry, modules
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset, ImageSet


@dataclass(frozen=True)
class ImageRequest:
    dataset: Dataset
    ipc: int
    seed: int = 0
    path: Path | None = None  # input file for methods that read one (`import`)
    model: str = "convnet"  # the network a learned method distills with
    runtime: Runtime = Runtime()
    params: dict = field(default_factory=dict)  # method hyperparameters (from a recipe), validated by the method
    checkpoint_dir: Path | None = None  # where learned methods checkpoint; None = no checkpoints
    resume: bool = False  # continue from the checkpoint in checkpoint_dir
    float_images: bool = False  # learned methods: keep float32 pixels instead of rounding to uint8
    buffer: Path | None = None  # MTT: expert folder written by `ladd experts --out`; None = the expert cache
    teacher: Path | None = None  # SRe²L/LPLD: BN teacher directory (`ladd squeeze`); None = the recipe's teacher in the cache


IMAGE_METHODS: Registry[Callable[[ImageRequest], ImageSet]] = Registry(
    "image method", modules(__name__, "dm", "gradient_matching", "herding", "imported", "lic", "mtt", "random", "recover", "rded")
)


def check_params(method: str, params: dict) -> None:
    """Recipe parameters overridden by name (`--param KEY=VALUE`), checked against the method's
    parameter model before anything runs; errors of a single field name it. (Checks across fields
    and the recipe's own values run when the method starts.)"""
    from ladd.images.recipes import params_model

    if not params:
        return
    model = params_model(method)
    if model is None:
        raise ConfigError(f"--param is for image methods with recipes, not {method}: leave it out")
    try:
        model(**params)
    except ValidationError as e:
        err = next((err for err in e.errors() if err["loc"] and err["loc"][0] in params), None)
        if err is None:
            return
        key = err["loc"][0]
        valid = f" (parameters of {method}: {', '.join(model.model_fields)})" if err["type"] == "extra_forbidden" else ""
        raise ConfigError(f"--param {key}={params[key]!r}: {err['msg']}{valid}") from None


def check_ipc(dataset: Dataset, ipc: int) -> None:
    counts = dataset.train.labels.bincount(minlength=dataset.num_classes)
    smallest = int(counts.min())
    if ipc < 1 or ipc > smallest:
        raise ConfigError(
            f"--ipc {ipc} is not possible on {dataset.name}: it must be between 1 and {smallest}, "
            f"the size of its smallest class ({dataset.class_names[int(counts.argmin())]!r})"
        )


def make_images(method: str, request: ImageRequest) -> ImageSet:
    return IMAGE_METHODS.get(method)(request)
