"""The labeler: an early-stopped network of the distillation architecture.

Trained from scratch on the source training set with the expert recipe of MTT's buffer.py
(SGD lr 0.01, no momentum, no weight decay, batch 256, DSA augmentation, constant lr), saving a
checkpoint every epoch (`epoch_000` is the initialization). Early stopping is choosing one of
those checkpoints: the LADD paper labels with epoch 10 of a 50-epoch trajectory.

A labeler directory records the dataset, class order and normalization it was trained with, so
it refuses to label data it does not understand (the most common reproduction failure upstream).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file
from torch import nn

from ladd.augment.dsa import strategy_for
from ladd.core.errors import LaddError
from ladd.core.io import sha256, write_json
from ladd.core.runtime import Runtime, seeded
from ladd.core.types import Dataset
from ladd.models import build_model
from ladd.train.loop import Recipe, TrainData, accuracy, checkpoint_path, train
from ladd.train.terms import method_terms

INFO = "labeler.json"


class LabelerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "convnet"
    epochs: int = Field(10, ge=1)  # epochs trained (checkpoints 0..epochs are saved)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(256, ge=1)
    seed: int = 0


def train_labeler(dataset: Dataset, cfg: LabelerConfig, directory: Path, runtime: Runtime) -> Path:
    """Train (or resume training) a labeler into `directory`; returns the directory."""
    directory = Path(directory)
    info_path = directory / INFO
    if info_path.exists():
        info = read_info(directory)
        _check_matches(info, dataset, directory)
        if info["config"] != cfg.model_dump():
            raise LaddError(f"{directory} holds a labeler trained with {info['config']}: use another --labeler-dir")
    model = build_for(dataset, cfg.model, cfg.seed)
    recipe = Recipe(
        epochs=cfg.epochs, lr=cfg.lr, momentum=0.0, weight_decay=0.0, batch_size=cfg.batch_size,
        decay_at=None, dsa=strategy_for(dataset.name),
    )
    info = {
        "kind": "ladd-labeler",
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "shape": list(dataset.shape),
        "config": cfg.model_dump(),
        "recipe": recipe.model_dump(),
        "complete": False,
    }
    write_json(info_path, info)
    data = TrainData(dataset.train.images, dataset.train.labels, dataset.mean, dataset.std)
    log = train(
        model, data, method_terms("baseline"), recipe, seed=cfg.seed, runtime=runtime,
        description=f"labeler {cfg.model}", checkpoint_dir=directory,
    )
    write_json(info_path, {**info, "complete": True, "samples_seen": sum(log.samples.values())})
    return directory


def read_info(directory: Path) -> dict:
    """The labeler's description, {} when the directory holds none yet."""
    path = Path(directory) / INFO
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LaddError(f"{path} is not valid JSON ({e.msg}): delete the labeler directory and train again") from e


def build_for(dataset: Dataset, model: str, seed: int) -> nn.Module:
    c, h, w = dataset.shape
    with seeded(seed):
        return build_model(model, channels=c, num_classes=dataset.num_classes, im_size=(h, w))


def _check_matches(info: dict, dataset: Dataset, directory: Path) -> None:
    if info.get("kind") != "ladd-labeler":
        raise LaddError(f"{directory / INFO} is not a ladd labeler description")
    if info["class_names"] != list(dataset.class_names) or info["shape"] != list(dataset.shape):
        raise LaddError(
            f"labeler in {directory} was trained on {info['dataset']} with classes {info['class_names'][:5]}…, "
            f"shape {info['shape']}; it cannot label {dataset.name} (different class order or image shape)"
        )
    if any(abs(a - b) > 1e-4 for a, b in zip(info["mean"] + info["std"], list(dataset.mean) + list(dataset.std))):
        raise LaddError(f"labeler in {directory} used another normalization than {dataset.name}: retrain it")


def load_labeler(directory: Path, epoch: int, dataset: Dataset, runtime: Runtime) -> tuple[nn.Module, dict]:
    """The labeler at a saved epoch, checked against the dataset; also returns its provenance."""
    directory = Path(directory)
    info = read_info(directory)
    if not info:
        raise LaddError(f"{directory} is not a labeler directory (no {INFO}): train one with `ladd label`")
    _check_matches(info, dataset, directory)
    ckpt = checkpoint_path(directory, epoch)
    if not ckpt.exists():
        saved = sorted(int(p.stem.split("_")[1]) for p in directory.glob("epoch_*.safetensors"))
        raise LaddError(f"labeler epoch {epoch} was not saved in {directory}; saved epochs: {saved}")
    model = build_for(dataset, info["config"]["model"], 0)
    model.load_state_dict(load_file(ckpt))
    model.to(runtime.device).eval()
    test_acc = accuracy(model, dataset.test.images, dataset.test.labels, dataset.mean, dataset.std)
    provenance = {
        "directory": str(directory),
        "model": info["config"]["model"],
        "epoch": epoch,
        "checkpoint_sha256": sha256(ckpt),
        "config": info["config"],
        "recipe": info["recipe"],
        "test_acc": round(test_acc, 6),
        "samples_per_epoch": len(dataset.train),
    }
    return model, provenance
