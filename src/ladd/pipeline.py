"""The stages composed: source → images → labels → evaluation. The CLI only parses options into
these configs; notebooks and scripts call the same functions."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ladd.artifact import Artifact
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.data import load_dataset
from ladd.images import IMAGE_METHODS, ImageRequest, make_images
from ladd.images.recipes import has_recipes, load_recipe
from ladd.experts import cache_root
from ladd.labels import LABEL_METHODS, LabelConfig


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "mnist5k"
    data_dir: str | None = None
    resolution: int | None = None
    skip_unreadable: bool = False


class ImagesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "random"
    ipc: int = Field(10, ge=1)
    seed: int = 0
    import_path: str | None = None
    model: str = "convnet"  # the network learned methods distill with
    float_images: bool = False  # learned methods: store float32 pixels instead of uint8
    recipe: str | None = None  # shipped recipe name or .toml path; default per (method, dataset)
    resume: bool = False
    buffer: str | None = None  # MTT: expert folder from `ladd experts --out`; default: the expert cache
    params: dict[str, Any] = {}  # recipe parameters overridden by name (`--param KEY=VALUE`), e.g. LIC's stage switches


def load_source(cfg: SourceConfig) -> Dataset:
    return load_dataset(
        cfg.dataset,
        data_dir=None if cfg.data_dir is None else Path(cfg.data_dir).expanduser(),
        resolution=cfg.resolution,
        skip_unreadable=cfg.skip_unreadable,
    )


def distill(dataset: Dataset, source: SourceConfig, cfg: ImagesConfig, runtime: Runtime = Runtime()) -> Artifact:
    """Image stage → an artifact holding images and hard labels."""
    path = None if cfg.import_path is None else Path(cfg.import_path).expanduser()
    method = IMAGE_METHODS.canonical(cfg.method)
    if cfg.buffer is not None and method != "mtt":
        raise LaddError(f"--buffer is for --images mtt, not {method}: leave it out")
    recipe = load_recipe(method, dataset.name, cfg.ipc, cfg.recipe) if has_recipes(method) else None
    if cfg.params and recipe is None:
        raise LaddError(f"--param is for image methods with recipes, not {method}: leave it out")
    params = {**(recipe["params"] if recipe else {}), **cfg.params}
    checkpoints = checkpoint_dir(dataset, cfg, params) if recipe else None
    buffer = None if cfg.buffer is None else Path(cfg.buffer).expanduser()
    request = ImageRequest(dataset, cfg.ipc, cfg.seed, path, cfg.model, runtime, params, checkpoints, cfg.resume, cfg.float_images, buffer)
    images = make_images(method, request)
    manifest = {
        "source": {
            **source.model_dump(),
            "class_names": list(dataset.class_names),
            "mean": list(dataset.mean),
            "std": list(dataset.std),
            "shape": list(dataset.shape),
        },
        "ipc": len(images) // dataset.num_classes,
        "images": {**cfg.model_dump(exclude={"resume"}), "method": method, "recipe": recipe, "learned": images.info},
    }
    art = Artifact(images.images, images.labels, manifest)
    return art if images.regions is None else with_region_labels(art, images.regions, images.info["observer"], images.info["flops"])


def with_region_labels(art: Artifact, regions: torch.Tensor, observer: dict, flops: dict) -> Artifact:
    """Region soft labels of squeezed images (LIC, RDED), stored as LADD dense labels whose
    sub-sampler geometry (n = √N, R = 1/√N) is the tile grid, so `local-dense` trains on them (Eq. 9)."""
    n = math.isqrt(regions.shape[1])
    manifest = {"method": "region", "dtype": "float32", "top_k": None, "subsample": {"n": n, "r": 1.0 / n}, "observer": observer}
    return art.with_labels(None, regions.float(), manifest, flops)


def checkpoint_dir(dataset: Dataset, cfg: ImagesConfig, params: dict) -> Path:
    """Where a learned method checkpoints: keyed by everything that changes its result (an MTT
    buffer by its absolute path; runs without one keep their key)."""
    images = cfg.model_dump(exclude={"resume", "buffer"})
    if cfg.buffer is not None:
        images["buffer"] = str(Path(cfg.buffer).expanduser().resolve())
    key = json.dumps([dataset.name, list(dataset.class_names), dataset.mean, images, params], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_root() / "distill" / f"{cfg.method}-{dataset.name}-ipc{cfg.ipc}-seed{cfg.seed}-{digest}"


def source_of(art: Artifact) -> SourceConfig:
    """The source an artifact was made from, to reload its dataset (e.g. its test split)."""
    src = art.manifest.get("source", {})
    return SourceConfig(**{k: src[k] for k in SourceConfig.model_fields if k in src})


def check_same_data(art: Artifact, dataset: Dataset) -> None:
    src = art.manifest["source"]
    if src["class_names"] != list(dataset.class_names) or src["shape"] != list(dataset.shape):
        raise LaddError(
            f"the artifact was made from {src['dataset']} ({len(src['class_names'])} classes, shape {src['shape']}); "
            f"it cannot be used with {dataset.name} ({dataset.num_classes} classes, shape {list(dataset.shape)})"
        )


def label(art: Artifact, dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> Artifact:
    """Label stage: run the configured label method and store its labels in the artifact."""
    check_same_data(art, dataset)
    method = LABEL_METHODS.canonical(cfg.method)
    out = LABEL_METHODS.get(method)(art, dataset, cfg, runtime)
    dtype = getattr(torch, cfg.dtype)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    manifest = {"method": method, "dtype": cfg.dtype, "top_k": cfg.top_k, **out.manifest, "config": cfg.model_dump()}
    return art.with_labels(cast(out.soft), cast(out.dense), manifest, out.flops)
