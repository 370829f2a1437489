"""Squeeze (SRe²L/LPLD stage 1): a batch-norm teacher and its class-wise BN statistics.

The teacher is an expert (`ladd.experts`: trained, cached and resumable through `ExpertConfig`,
or an existing expert directory). SRe²L's recover matches the teacher's own running statistics;
LPLD's matches, per class, statistics gathered by one pass over the training set with frozen
weights (eval mode): for every BN layer l and class c present in a batch,
μ_{l,c} ← (1 − m)·μ_{l,c} + m·μ_B and σ²_{l,c} ← (1 − m)·σ²_{l,c} + m·σ²_B, with μ_B, σ²_B the
mean and biased variance of that class's inputs to the layer (LPLD Eq. 7; momentum 0.1 and the
biased variance as in he-y/soft-label-pruning-for-dataset-distillation@63eee18
recover/models/resnet_class.py). Deviations: a class's first batch initializes its estimate (the
reference starts from BN's 0/1, which still weighs 19% after the 16 batches of mnist5k's 4,000 training images),
and the pass runs without augmentation (the reference uses RandomResizedCrop + flip, which is
wrong for digits), so the statistics are a pure function of weights, data and batch order.
Under torchrun the batches are shared out and the EMA, unrolled into a weighted sum over batches
(`ema_weights`), is all-reduced; rank 0 writes the file.

The statistics are stored beside the teacher (`class_bn_stats.safetensors`, with the teacher
checkpoint's SHA-256, dataset and class order as JSON in its metadata), so statistics of another
teacher are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ladd.core import dist, progress
from ladd.core.errors import ArtifactError, ConfigError
from ladd.core.io import load_safetensors, save_tensors
from ladd.core.progress import log
from ladd.core.runtime import Runtime, generator
from ladd.core.types import Dataset, normalize
from ladd.data.stream import gather
from ladd.experts import ExpertConfig, ensure_expert, load_expert, read_info
from ladd.models import MODELS

STATS = "class_bn_stats.safetensors"  # the statistics, with their description as JSON metadata: one file, one atomic write


class SqueezeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    batch_size: int = Field(256, ge=1)  # of the statistics pass
    momentum: float = Field(0.1, gt=0, le=1)  # LPLD: BN's default momentum
    seed: int = 0  # order of the statistics pass


def bn_layers(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def require_bn(model: nn.Module, name: str) -> dict[str, nn.BatchNorm2d]:
    """The teacher's BN layers, or a one-line error naming the models that have them."""
    layers = bn_layers(model)
    if not layers:
        with_bn = ", ".join(n for n in MODELS.names() if n.endswith("-bn"))
        raise ConfigError(f"teacher {name} has no BatchNorm layers, which SRe²L/LPLD recover matches: use a BN teacher ({with_bn})")
    return layers


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of an N×C×H×W batch (what a BN layer normalizes with in training)."""
    flat = x.transpose(0, 1).flatten(1)
    return flat.mean(1), flat.var(1, unbiased=False)


def teacher_dir(dataset: Dataset, directory: str | Path | None, model: str, epochs: int, runtime: Runtime) -> Path:
    """An expert directory holding a complete teacher: `directory` as it is when it holds one
    (its own config wins), else a teacher of `model` trained for `epochs` there (default: the cache)."""
    if directory is not None and read_info(Path(directory).expanduser()).get("complete"):
        return Path(directory).expanduser()
    path, _ = ensure_expert(dataset, ExpertConfig(model=model, epochs=epochs), directory, runtime)
    return path


def load_teacher(directory: Path, dataset: Dataset, runtime: Runtime, need_bn: bool = True) -> tuple[nn.Module, dict]:
    """The teacher at its last epoch, frozen, in eval mode, with its provenance; BN required for recover."""
    epochs = read_info(directory).get("config", {}).get("epochs", 0)  # load_expert refuses a non-expert directory
    model, prov = load_expert(directory, epochs, dataset, runtime)
    if need_bn:
        require_bn(model, prov["model"])
    return model.requires_grad_(False).eval(), prov


def ema_weights(batch_labels: list[torch.Tensor], k: int, momentum: float) -> torch.Tensor:
    """B×K weight of each batch's value in each class's final estimate: the EMA unrolled. A class
    present in batches b_1 … b_T ends at Σ_t w_t·value_t with w_1 = (1 − m)^(T−1) and
    w_t = m·(1 − m)^(T−t) for t > 1 (its first batch initializes it), so the estimate is a sum over
    batches, which ranks split and all-reduce."""
    present = torch.stack([torch.bincount(labels, minlength=k) > 0 for labels in batch_labels]).double()
    t = present.cumsum(0)  # 1-based position of the batch among the class's batches
    remaining = present.sum(0) - t
    w = (1 - momentum) ** remaining * torch.where(t == 1, 1.0, momentum)
    return w * present


@torch.no_grad()
def class_statistics(model: nn.Module, dataset: Dataset, cfg: SqueezeConfig, runtime: Runtime) -> dict[str, torch.Tensor]:
    """{"mean.<layer>": K×C, "var.<layer>": K×C, "count": K} by one eval-mode pass (module docstring).
    Under torchrun each rank passes its contiguous share of the batches (`dist.part`) and adds its
    batches' weighted values; the sums are all-reduced, so the result is one process's up to the
    order of a float64 sum (rounded to float32: equal, or 1 ulp apart)."""
    layers = bn_layers(model)
    k = dataset.num_classes
    order = torch.randperm(len(dataset.train), generator=generator(cfg.seed))
    batches = order.split(cfg.batch_size)
    weights = ema_weights([dataset.train.labels[idx] for idx in batches], k, cfg.momentum).to(runtime.device)
    est = {
        f"{kind}.{name}": torch.zeros(k, m.num_features, dtype=torch.float64, device=runtime.device)
        for name, m in layers.items()
        for kind in ("mean", "var")
    }
    current: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # this batch's labels, K×1 class sizes and weights

    def hook(name):
        def update(_module, inputs, _output):
            x, (labels, n, w) = inputs[0].double(), current[0]
            # per-class mean and biased variance over every pixel of the class's images
            m1 = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x.mean((2, 3))) / n
            m2 = torch.zeros_like(m1).index_add_(0, labels, (x * x).mean((2, 3))) / n
            est[f"mean.{name}"] += w * m1
            est[f"var.{name}"] += w * (m2 - m1 * m1)

        return update

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    mine = range(len(batches))[dist.part(len(batches))]
    try:
        with progress.bar("squeeze: class-wise BN statistics", len(mine)) as advance:
            for b in mine:
                idx = batches[b]
                labels = dataset.train.labels[idx].to(runtime.device)
                current[:] = [(labels, torch.bincount(labels, minlength=k).unsqueeze(1).clamp_min(1), weights[b].unsqueeze(1))]
                model(normalize(gather(dataset.train.images, idx).to(runtime.device), dataset.mean, dataset.std))
                advance()
    finally:
        for h in handles:
            h.remove()
    stats = {n: dist.all_sum(t).float().cpu() for n, t in est.items()}
    stats["count"] = torch.bincount(dataset.train.labels, minlength=k)
    return stats


def squeeze(dataset: Dataset, directory: Path, cfg: SqueezeConfig, runtime: Runtime) -> Path:
    """Compute the teacher's class-wise statistics and store them beside it; returns the stats file."""
    model, prov = load_teacher(directory, dataset, runtime)
    with dist.locked(directory / STATS, "squeezing"):
        return write_class_statistics(model, prov, dataset, directory, cfg, runtime)


def write_class_statistics(model: nn.Module, prov: dict, dataset: Dataset, directory: Path, cfg: SqueezeConfig, runtime: Runtime) -> Path:
    """Squeeze with a teacher already loaded from `directory` (`prov`: its provenance)."""
    stats = class_statistics(model, dataset, cfg, runtime)
    info = {
        "kind": "ladd-class-bn-stats",
        "teacher": {k: prov[k] for k in ("model", "epoch", "checkpoint_sha256", "config", "test_acc")},
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "layers": list(bn_layers(model)),
        "squeeze": cfg.model_dump(),
    }
    dist.first(lambda: save_tensors(directory / STATS, stats, metadata={"ladd": json.dumps(info)}))
    log(f"wrote class-wise BN statistics of {len(bn_layers(model))} layers × {dataset.num_classes} classes to {directory / STATS}")
    return directory / STATS


def load_class_statistics(directory: Path, dataset: Dataset, teacher: dict, layers: list[str]) -> dict[str, torch.Tensor]:
    """The stored statistics, refused unless they were made from this teacher checkpoint and class order."""
    path = directory / STATS
    if not path.exists():
        raise ArtifactError(
            f"no class-wise BN statistics in {directory}: run `ladd squeeze --dataset {dataset.name} --teacher-dir {directory}`"
        )
    redo = f"run `ladd squeeze --dataset {dataset.name} --teacher-dir {directory}` again"
    stats, meta = load_safetensors(path, metadata=True)  # a corrupt file is one line naming it
    try:
        info = json.loads(meta.get("ladd", "{}"))
    except ValueError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("teacher", {}), dict):
        raise ArtifactError(f"{path} does not describe its statistics (its 'ladd' metadata is not a JSON object): {redo}")
    if info.get("teacher", {}).get("checkpoint_sha256") != teacher["checkpoint_sha256"]:
        raise ArtifactError(
            f"the class-wise BN statistics in {directory} were made from another teacher checkpoint than {teacher['directory']}: {redo}"
        )
    if info.get("class_names") != list(dataset.class_names) or info.get("layers") != layers:
        raise ArtifactError(
            f"the class-wise BN statistics in {directory} were made for other classes or BN layers than {dataset.name}'s teacher: {redo}"
        )
    k = dataset.num_classes
    for name in layers:
        for kind in ("mean", "var"):
            t = stats.get(f"{kind}.{name}")
            if t is None or t.ndim != 2 or t.shape[0] != k or not torch.isfinite(t).all():
                raise ArtifactError(f"{path}: {kind}.{name} is missing, not {k}×C, or not finite: {redo}")
    return stats
