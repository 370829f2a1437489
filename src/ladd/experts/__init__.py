"""Experts: networks trained on the source set with a checkpoint every epoch.

One implementation for every role: LADD's labeler (an early-stopped expert: the paper labels with
epoch 10 of a 50-epoch trajectory), soft-label experts, teachers and observers. The recipe is that
of MTT's buffer.py (SGD lr 0.01, no momentum, no weight decay, batch 256, DSA augmentation,
constant lr, or ×0.1 after half the epochs with `decay`, buffer.py's --decay); `epoch_000` is the
initialization, so early stopping is choosing a checkpoint.

An expert directory records the dataset, class order and normalization it was trained with, so it
refuses data it does not understand (the most common reproduction failure upstream). Experts are
cached by dataset and config and reused across runs, or kept in an explicit buffer folder
(`expert_000`, `expert_001`, … under it) that MTT can be pointed at.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ladd.augment.dsa import strategy_for
from ladd.core.errors import ArtifactError, ConfigError, DataError
from ladd.core.cache import cache_root, entry
from ladd.core.checkpoint import restore_weights
from ladd.core.io import read_json, sha256, sweep, write_json
from ladd.core import dist, progress
from ladd.core.runtime import Runtime, seeded
from ladd.core.types import Dataset
from ladd.models import DEFAULT_MODEL, build_model
from ladd.train.loop import Recipe, TrainData, accuracy, checkpoint_path, saved_epochs, train
from ladd.train.terms import method_terms

INFO = "expert.json"


class ExpertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = DEFAULT_MODEL
    epochs: int = Field(10, ge=1)  # epochs trained (checkpoints 0..epochs are saved)
    lr: float = Field(0.01, gt=0, allow_inf_nan=False)
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    saves_per_epoch: int = Field(1, ge=1)  # >1 also keeps checkpoints at fractions of an epoch
    decay: bool = False  # lr ×0.1 after half the epochs: buffer.py --decay (MTT, no-distillation); default constant


def train_expert(dataset: Dataset, cfg: ExpertConfig, directory: Path, runtime: Runtime) -> Path:
    """Train (or resume training) an expert into `directory`; returns the directory."""
    directory = Path(directory)
    steps = -(-len(dataset.train) // cfg.batch_size)
    if cfg.saves_per_epoch > steps:  # two fractions would round to one step, saved under the later one's name
        raise ConfigError(
            f"{cfg.saves_per_epoch} saves per epoch (--labeler-saves-per-epoch, --expert-saves-per-epoch) is more than the "
            f"{steps} steps of an epoch ({len(dataset.train)} images in batches of {cfg.batch_size}): give at most {steps}"
        )
    info_path = directory / INFO
    if info_path.exists():
        info = read_info(directory)
        check_matches(info, dataset, directory)
        if ExpertConfig(**info["config"]) != cfg:  # parsed, so a field added since it was trained takes its default
            raise ArtifactError(f"{directory} holds an expert trained with {info['config']}: use another directory")
    model = build_for(dataset, cfg.model, cfg.seed)
    recipe = Recipe(
        epochs=cfg.epochs,
        lr=cfg.lr,
        momentum=0.0,
        weight_decay=0.0,
        batch_size=cfg.batch_size,
        milestones=(0.5,) if cfg.decay else (),
        dsa=strategy_for(dataset.name),
    )
    info = {
        "kind": "ladd-expert",
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "shape": list(dataset.shape),
        "config": cfg.model_dump(),
        "recipe": recipe.model_dump(),
        "complete": False,
    }
    dist.first(lambda: write_json(info_path, info))
    data = TrainData(dataset.train.images, dataset.train.labels, dataset.mean, dataset.std)
    log = train(
        model,
        data,
        method_terms("baseline"),
        recipe,
        seed=cfg.seed,
        runtime=runtime,
        description=f"expert {cfg.model} · seed {cfg.seed}",
        checkpoint_dir=directory,
        saves_per_epoch=cfg.saves_per_epoch,
    )
    dist.first(lambda: _complete(info_path, info, log, model, dataset, checkpoint_path(directory, cfg.epochs)))
    return directory


def _complete(info_path: Path, info: dict, log, model, dataset: Dataset, final: Path) -> None:
    """Mark the expert complete: its samples seen, final checkpoint's hash and test accuracy
    (rank 0 alone, under torchrun: the other ranks hold the same weights)."""
    test_acc = accuracy(model, dataset.test.images, dataset.test.labels, dataset.mean, dataset.std)
    write_json(
        info_path,
        {
            **info,
            "complete": True,
            "samples_seen": sum(log.samples.values()),
            "final_sha256": sha256(final),
            "test_acc": round(test_acc, 6),
        },
    )


def read_info(directory: Path) -> dict:
    """The expert's description, {} when the directory holds none yet."""
    path = Path(directory) / INFO
    if not path.exists():
        return {}
    return read_json(path, "delete the expert directory and train again")


def build_for(dataset: Dataset, model: str, seed: int) -> nn.Module:
    c, h, w = dataset.shape
    with seeded(seed):
        return build_model(model, channels=c, num_classes=dataset.num_classes, im_size=(h, w))


def check_matches(info: dict, dataset: Dataset, directory: Path) -> None:
    """Refuse an expert trained on other data: class order, image shape and normalization must agree."""
    if info.get("kind") != "ladd-expert":
        raise ArtifactError(f"{directory / INFO} is not a ladd expert description: train one with `ladd experts`")
    retrain = f"train it on {dataset.name} or use it with the dataset it was trained on"
    if info["class_names"] != list(dataset.class_names):
        raise DataError(
            f"expert in {directory} was trained on {info['dataset']} with {_names(info['class_names'])}, "
            f"not {dataset.name}'s {_names(dataset.class_names)} (different classes or class order): {retrain}"
        )
    if info["shape"] != list(dataset.shape):
        raise DataError(
            f"expert in {directory} was trained on {info['dataset']} images of shape {info['shape']}, "
            f"not {dataset.name}'s {list(dataset.shape)} (different image shape): {retrain}"
        )
    if any(abs(a - b) > 1e-4 for a, b in zip(info["mean"] + info["std"], list(dataset.mean) + list(dataset.std))):
        raise DataError(f"expert in {directory} used another normalization than {dataset.name}: {retrain}")


def _names(names) -> str:
    names = list(names)
    return f"{len(names)} classes {names[:5]}" + ("…" if len(names) > 5 else "")


def load_expert(directory: Path, epoch: float, dataset: Dataset, runtime: Runtime) -> tuple[nn.Module, dict]:
    """The expert at a saved epoch, checked against the dataset; also returns its provenance."""
    directory = Path(directory)
    info = read_info(directory)
    if not info:
        raise ArtifactError(f"{directory} is not an expert directory (no {INFO}): train one with `ladd label`")
    if info.get("kind") == "ladd-pretrained":  # a weights file set up as a teacher (`ladd.experts.pretrained`): no epochs
        from ladd.experts.pretrained import load_pretrained_dir

        return load_pretrained_dir(directory, dataset, runtime)
    check_matches(info, dataset, directory)
    ckpt = checkpoint_path(directory, epoch)
    if not ckpt.exists():
        saved = [f"{e:g}" for e in saved_epochs(directory)]
        raise ConfigError(f"expert epoch {epoch:g} was not saved in {directory}; saved epochs: {', '.join(saved)}")
    digest = sha256(ckpt)
    if epoch == info["config"]["epochs"] and info.get("final_sha256") not in (None, digest):
        raise ArtifactError(
            f"{ckpt} does not match the checksum recorded in {directory / INFO} (the file was changed "
            f"after training): delete the expert directory and train again"
        )
    model = build_for(dataset, info["config"]["model"], 0)
    restore_weights(model, ckpt)
    model.to(runtime.device).eval()
    final = epoch == info["config"]["epochs"] and "test_acc" in info  # measured once, when training ended (same data: checked above)
    test_acc = info["test_acc"] if final else accuracy(model, dataset.test.images, dataset.test.labels, dataset.mean, dataset.std)
    provenance = {
        "directory": str(directory),
        "model": info["config"]["model"],
        "epoch": epoch,
        "checkpoint_sha256": digest,
        "config": info["config"],
        "recipe": info["recipe"],
        "test_acc": round(test_acc, 6),
        "samples_per_epoch": len(dataset.train),
    }
    return model, provenance


def cache_dir(dataset: Dataset, cfg: ExpertConfig, precision: str = "fp32") -> Path:
    """Experts are reused across runs when dataset, training config, precision and the experts'
    format agree (fp32 keys name no precision: the keys of every expert trained before it was an option)."""
    key = [dataset.name, list(dataset.class_names), list(dataset.shape), dataset.mean, dataset.std, cfg.model_dump()]
    if precision != "fp32":
        key.append(precision)
    return entry("experts", f"{dataset.name}-{cfg.model}-seed{cfg.seed}-ep{cfg.epochs}", key)


def registry(roots: list[Path] | None = None) -> list[dict]:
    """Every trained network (teacher, labeler, expert) under `roots` (default: the expert cache),
    one row each: where, what it was trained on (dataset, classes, normalization), how (config,
    recipe), its test accuracy and the checksum of its final weights. A folder named that does not
    exist is refused (an empty listing would read as "none trained there")."""
    for root in roots or []:
        if not Path(root).expanduser().is_dir():
            raise ArtifactError(f"{root} is not a folder: pass folders holding trained networks (default: the expert cache)")
    rows = []
    for root in roots or [cache_root() / "experts"]:
        for info_path in sorted(Path(root).expanduser().rglob(INFO)):
            info = read_info(info_path.parent)
            if info.get("kind") != "ladd-expert":
                continue
            rows.append(
                {
                    "directory": str(info_path.parent),
                    "dataset": info["dataset"],
                    "classes": len(info["class_names"]),
                    "class_names": info["class_names"],
                    "mean": info["mean"],
                    "std": info["std"],
                    "model": info["config"]["model"],
                    "seed": info["config"]["seed"],
                    "epochs": info["config"]["epochs"],
                    "config": info["config"],
                    "recipe": info["recipe"],
                    "complete": info.get("complete", False),
                    "test_acc": info.get("test_acc"),
                    "final_sha256": info.get("final_sha256"),
                }
            )
    return rows


def in_buffer(buffer: Path, seed: int) -> Path:
    """Expert `seed` of an explicit buffer folder (`ladd experts --out BUFFER`, MTT's `--buffer`)."""
    return Path(buffer).expanduser() / f"expert_{seed:03d}"


def ensure_buffer(dataset: Dataset, model: str, count: int, epochs: int, runtime: Runtime, out: Path | None = None) -> Path:
    """MTT's expert trajectories (`ladd experts`): experts of seeds 0..count-1, each `epochs` long,
    in `out` (`OUT/expert_000 …`) or the cache; finished ones are reused. Returns their folder."""
    if count < 1:
        raise ConfigError(f"{count} experts asked for: train at least one (--num-experts 1 or more)")
    for seed in range(count):
        cfg = ExpertConfig(model=model, epochs=epochs, seed=seed)
        directory, _ = ensure_expert(dataset, cfg, None if out is None else in_buffer(out, seed), runtime)
    return directory.parent


_reused: set[Path] = set()  # experts this process has said it reuses


def ensure_expert(dataset: Dataset, cfg: ExpertConfig, directory: Path | None, runtime: Runtime) -> tuple[Path, dict]:
    """A fully trained expert for `cfg`: reused from `directory` (default: the cache) or trained
    there — under torchrun by all ranks together (DDP), rank 0 writing."""
    directory = Path(directory).expanduser() if directory else cache_dir(dataset, cfg, runtime.speed.precision)
    with dist.locked(directory, "training"):  # a second process waits, then reuses the expert
        info = dist.first(lambda: (sweep(directory), read_info(directory))[1])
        if info.get("complete"):
            check_matches(info, dataset, directory)
            if ExpertConfig(**info["config"]) != cfg:  # parsed, so a field added since it was trained takes its default
                raise ArtifactError(
                    f"the expert in {directory} was trained with {info['config']}, not {cfg.model_dump()}: "
                    f"pass the matching model and epochs, or another directory"
                )
            if directory not in _reused:  # once per expert and command: MTT and experiments load experts again and again
                _reused.add(directory)
                progress.log(f"reusing the expert trained in {directory}")
        else:
            train_expert(dataset, cfg, directory, runtime)
            info = read_info(directory)
    return directory, info
