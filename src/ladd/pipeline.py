"""The stages composed: source → images → labels → evaluation. The CLI only parses options into
these configs; notebooks and scripts call the same functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dataclasses import replace

import torch
from pydantic import BaseModel, ConfigDict, Field

from ladd.artifact import Artifact, load_artifact, save_artifact
from ladd.artifact.relabel import load_store
from ladd.core import dist
from ladd.core.errors import ConfigError, DataError
from ladd.core.io import sweep
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.data import load_dataset
from ladd.images import IMAGE_METHODS, ImageRequest, make_images
from ladd.images.recover import METHODS as RECOVER_METHODS
from ladd.images.optimize import STATE
from ladd.images.recipes import has_recipes, load_recipe
from ladd.core.cache import entry
from ladd.labels import LABEL_METHODS, LabelConfig
from ladd.labels.relabel import RelabelConfig, relabel as make_relabel
from ladd.cost.flops import UNIT
from ladd.models import DEFAULT_MODEL


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
    model: str = DEFAULT_MODEL  # the network learned methods distill with
    float_images: bool = False  # learned methods: store float32 pixels instead of uint8
    recipe: str | None = None  # shipped recipe name or .toml path; default per (method, dataset)
    resume: bool = False
    buffer: str | None = None  # MTT: expert folder from `ladd experts --out`; default: the expert cache
    teacher: str | None = None  # SRe²L/LPLD: BN teacher directory (`ladd squeeze`); default: the recipe's teacher
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
    method = IMAGE_METHODS.canonical(cfg.method)
    if cfg.buffer is not None and method != "mtt":
        raise ConfigError(f"--buffer is for --images mtt, not {method}: leave it out")
    if cfg.teacher is not None and method not in RECOVER_METHODS:
        raise ConfigError(f"--teacher-dir is for --images {' or '.join(RECOVER_METHODS)}, not {method}: leave it out")
    request, recipe = image_request(dataset, cfg, runtime)
    if request.checkpoint_dir is None:
        images = make_images(method, request)
    else:
        with dist.locked(
            request.checkpoint_dir, "distilling into"
        ) as waited:  # the same distillation at once: the second resumes the first's result
            dist.first(lambda: sweep(request.checkpoint_dir))
            images = make_images(method, replace(request, resume=request.resume or waited))
    manifest = {
        "source": {
            **source.model_dump(),
            "class_names": list(dataset.class_names),
            "mean": list(dataset.mean),
            "std": list(dataset.std),
            "shape": list(dataset.shape),
        },
        "ipc": len(images) // dataset.num_classes,
        "images": {**cfg.model_dump(exclude={"resume"}), "method": method, "recipe": recipe, "learned": images.info, "flops": images.flops},
    }
    art = Artifact(images.images, images.labels, manifest)
    if images.soft is not None:  # learned with the images: their cost is the image method's
        return art.with_labels(images.soft.float(), None, {"method": LEARNED_SOFT, "dtype": "float32", "top_k": None}, NO_LABEL_FLOPS)
    return art if images.regions is None else with_region_labels(art, images.regions, images.info["observer"], images.info["flops"])


# the label method recorded for soft labels learned with the images (MTT's `learn_labels`)
LEARNED_SOFT = "learned-with-images"
NO_LABEL_FLOPS = {"unit": UNIT, "labeler_train": 0, "label_generation": 0}


def with_region_labels(art: Artifact, regions: torch.Tensor, observer: dict, flops: dict) -> Artifact:
    """Region soft labels of squeezed images (LIC, RDED), stored as LADD dense labels whose
    sub-sampler geometry (n = √N, R = 1/√N) is the tile grid, so `local-dense` trains on them (Eq. 9)."""
    n = math.isqrt(regions.shape[1])
    manifest = {"method": "region", "dtype": "float32", "top_k": None, "subsample": {"n": n, "r": 1.0 / n}, "observer": observer}
    return art.with_labels(None, regions.float(), manifest, flops)


def image_request(dataset: Dataset, cfg: ImagesConfig, runtime: Runtime) -> tuple[ImageRequest, dict | None]:
    """The image method's request (recipe parameters and checkpoint folder resolved) and its recipe
    (None for methods without recipes)."""
    method = IMAGE_METHODS.canonical(cfg.method)
    recipe = load_recipe(method, dataset.name, cfg.ipc, cfg.recipe) if has_recipes(method) else None
    if cfg.params and recipe is None:
        raise ConfigError(f"--param is for image methods with recipes, not {method}: leave it out")
    params = {**(recipe["params"] if recipe else {}), **cfg.params}
    checkpoints = checkpoint_dir(dataset, cfg, params) if recipe else None
    path = None if cfg.import_path is None else Path(cfg.import_path).expanduser()

    def resolve(p):
        return None if p is None else Path(p).expanduser()

    request = ImageRequest(
        dataset,
        cfg.ipc,
        cfg.seed,
        path,
        cfg.model,
        runtime,
        params,
        checkpoints,
        cfg.resume,
        cfg.float_images,
        resolve(cfg.buffer),
        resolve(cfg.teacher),
    )
    return request, recipe


def continuing(dataset: Dataset, cfg: ImagesConfig) -> ImagesConfig:
    """`cfg` with resume on when an earlier run of it left checkpoints (learned methods), so a long
    experiment or benchmark that is stopped and started again continues where it was."""
    directory = image_request(dataset, cfg, Runtime())[0].checkpoint_dir
    if directory is None:  # not a learned method
        return cfg
    started = any(directory.rglob(STATE))  # recover, LIC: a checkpoint per unit in a folder of its own
    return cfg.model_copy(update={"resume": started})


def checkpoint_dir(dataset: Dataset, cfg: ImagesConfig, params: dict) -> Path:
    """Where a learned method checkpoints: keyed by everything that changes the learned images (an
    MTT buffer or a teacher by its absolute path; runs without one keep their key). Never
    `float_images` (only how the final images are stored: `--float-images --resume` after a
    uint8 run reuses its finished state)."""
    uint8 = cfg.model_copy(update={"float_images": False})  # both storage choices share one checkpoint
    images = uint8.model_dump(exclude={"resume", "buffer", "teacher", "params"})  # `params` are merged into `params`
    for name in ("buffer", "teacher"):
        if getattr(cfg, name) is not None:
            images[name] = str(Path(getattr(cfg, name)).expanduser().resolve())
    key = [dataset.name, list(dataset.class_names), dataset.mean, images, params]
    return entry("distill", f"{cfg.method}-{dataset.name}-ipc{cfg.ipc}-seed{cfg.seed}", key)


def source_of(art: Artifact) -> SourceConfig:
    """The source an artifact was made from, to reload its dataset (e.g. its test split)."""
    src = art.manifest.get("source", {})
    return SourceConfig(**{k: src[k] for k in SourceConfig.model_fields if k in src})


def check_same_data(art: Artifact, dataset: Dataset) -> None:
    """Refuse data other than the artifact's, saying what differs: class names (or their order),
    image shape, or normalization (the same classes and size from another folder or copy)."""
    src, name = art.manifest["source"], dataset.name
    names, made = list(dataset.class_names), src["class_names"]
    if len(made) != len(names):
        why = f"it has {len(made)} classes, {name} has {len(names)}"
    elif made != names:
        i = next(i for i, (a, b) in enumerate(zip(made, names)) if a != b)
        why = f"its class {i} is {made[i]!r}, {name}'s is {names[i]!r}" + (
            " (the same classes in another order)" if sorted(made) == sorted(names) else ""
        )
    elif src["shape"] != list(dataset.shape):
        made_shape, shape = ("×".join(map(str, s)) for s in (src["shape"], dataset.shape))
        why = f"its images are {made_shape}, {name}'s are {shape} (another --resolution?)"
    elif "mean" in src and any(abs(a - b) > 1e-4 for a, b in zip(src["mean"] + src["std"], list(dataset.mean) + list(dataset.std))):
        why = (
            f"its training images' mean/std are {_rounded(src['mean'])}/{_rounded(src['std'])}, {name}'s are "
            f"{_rounded(dataset.mean)}/{_rounded(dataset.std)} (the same classes and size from other images: another --data-dir?)"
        )
    else:
        return
    if src["dataset"] == name:  # the same name, other data: another version, folder or resolution (or an edited manifest)
        raise DataError(f"the artifact says it was made from {name}, but this {name} differs: {why}")
    raise DataError(f"the artifact was made from {src['dataset']} and cannot be used with {name}: {why}")


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def label(art: Artifact, dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> Artifact:
    """Label stage: run the configured label method and store its labels in the artifact."""
    check_same_data(art, dataset)
    method = LABEL_METHODS.canonical(cfg.method)
    out = LABEL_METHODS.get(method)(art, dataset, cfg, runtime)
    dtype = getattr(torch, cfg.dtype)

    def cast(t):
        return None if t is None else t.to(dtype)

    manifest = {"method": method, "dtype": cfg.dtype, "top_k": cfg.top_k, **out.manifest, "config": cfg.model_dump()}
    return art.with_labels(cast(out.soft), cast(out.dense), manifest, out.flops)


def relabel(art: Artifact, path: Path, dataset: Dataset, cfg: RelabelConfig, runtime: Runtime, *, overwrite: bool = False) -> Artifact:
    """Relabel stage (FKD-style, stored): write or resume `path/relabel/`, then return the artifact
    referencing it, with the bytes of its six components and the label-to-image ratios (LPLD
    Table 24; all six components, and the soft labels alone) in the manifest. Save it with `save_artifact(path, ...)`."""
    check_same_data(art, dataset)
    summary, directory = make_relabel(art, path, dataset, cfg, runtime, overwrite=overwrite)
    sha = art.manifest["files"]["images.safetensors"]["sha256"]
    store = load_store(directory, len(art.images), dataset.num_classes, sha)
    storage = store.storage()
    images_raw = art.manifest["storage"]["images"]["raw"]
    labels_raw = sum(b["raw"] for b in storage.values())
    manifest = {
        **art.manifest,
        "relabel": {
            **summary,
            "storage": storage,
            "label_to_image_ratio": labels_raw / images_raw,
            "soft_label_to_image_ratio": storage["labels"]["raw"] / images_raw,
        },
    }
    return replace(art, manifest=manifest, relabel=store)


def relabel_artifact(path: Path, dataset: Dataset, cfg: RelabelConfig, runtime: Runtime, *, overwrite: bool = False) -> Artifact:
    """`relabel` of the artifact saved at `path`, saved there, all under the artifact's lock: a
    second process relabelling it waits, then finds the relabel made and reuses it."""
    with dist.locked(path, "relabelling"):
        art = relabel(load_artifact(path), path, dataset, cfg, runtime, overwrite=overwrite)
        dist.barrier()  # every rank has read relabel.partial/ before rank 0's save moves it into place
        save_artifact(path, art)
    return load_artifact(path)


def random_counterpart(art: Artifact, dataset: Dataset, runtime: Runtime = Runtime()) -> Artifact:
    """A random real subset at the artifact's IPC, labelled by the artifact's own label config
    (same labeler, same geometry; region labels by the same observer on the same tile grid):
    DD-Ranking's "random" reference for IOR and ARS. Its image
    seed is the artifact's + 1, so a random artifact is compared with a different subset."""
    seed = int(art.manifest.get("images", {}).get("seed", 0)) + 1
    rnd = distill(dataset, source_of(art), ImagesConfig(method="random", ipc=art.manifest["ipc"], seed=seed), runtime)
    lab = art.manifest.get("labels")
    if lab is not None and lab["method"] == "region":  # LIC, RDED: the artifact's observer labels the same tile grid
        from ladd.images.observer import relabel_regions

        return with_region_labels(rnd, *relabel_regions(art.manifest, rnd.images, dataset, runtime))
    return rnd if lab is None else label(rnd, dataset, LabelConfig(**lab["config"]), runtime)


def plus_one(art: Artifact, dataset: Dataset, runtime: Runtime = Runtime()) -> Artifact:
    """LADD's baseline++: the artifact's image method re-run at IPC + 1 with hard labels only, so
    hard labels get about the bytes LADD's labels add (a learned method distills again, continuing
    the checkpoints an earlier sitting left: an interrupted paper-protocol eval does not redo it)."""
    made = art.manifest.get("images", {})
    if made.get("method") == "import":
        raise ConfigError(
            "baseline++ needs one more image per class from the method that made the images, and an imported set "
            "has none to give: leave out --equal-cost, or distill the images with ladd"
        )
    fields = {k: made[k] for k in ImagesConfig.model_fields if k in made and k not in ("recipe", "resume")}
    recipe = (made.get("recipe") or {}).get("name")
    cfg = ImagesConfig(**{**fields, "ipc": art.manifest["ipc"] + 1, "recipe": recipe})
    return distill(dataset, source_of(art), continuing(dataset, cfg), runtime)
