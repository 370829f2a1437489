"""FKD-style stored relabel (SRe²L's relabel stage): for E epochs, draw every sample's training
augmentation (RandomResizedCrop, flip, CutMix partner; λ and box per relabel batch), record the parameters and the
teacher's soft labels on the augmented image, and store them beside the artifact
(`ladd.artifact.relabel`). Students then replay them (`ladd.labels.replay`) with no teacher.

Epoch e draws from its own generator (seed, e), so a resumed relabel writes the same bytes as an
uninterrupted one; each finished epoch is one file, listed in relabel.json as it is written. A
relabel is written into `ARTIFACT/relabel.partial/` and becomes `relabel/` only when the artifact
is saved with it, so a stored relabel stays valid until its replacement is complete (`--overwrite`
included), and resuming checks that the teacher is the one that labelled the stored epochs.

Under torchrun the epochs go round-robin: in each round every rank writes one epoch file, and rank
0 lists the round's files in relabel.json (the only writer of it), so the folder holds the same
bytes as one process's, and a re-launch resumes after the last listed epoch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from ladd.artifact import Artifact
from ladd.artifact.relabel import RELABEL_DIR, read_info, write_epoch, write_info
from ladd.augment.dsa import strategy_for
from ladd.augment.fkd import render, sample_epoch
from ladd.core import dist, progress
from ladd.core.errors import ArtifactError, ConfigError
from ladd.core.io import sweep
from ladd.core.runtime import Runtime, generator
from ladd.core.types import Dataset
from ladd.cost import flops
from ladd.experts import ExpertConfig
from ladd.experts.pretrained import PretrainedConfig, omit_none
from ladd.labels import LabelConfig
from ladd.labels.methods import build_teacher

PARTIAL = "relabel.partial"  # where a relabel is written until the artifact is saved with it


class RelabelConfig(BaseModel):
    """Defaults from SRe²L's relabel (VILA-Lab/SRe2L@8d00cba relabel/generate_soft_label.py):
    fp16 logits, cutmix; T = 20 is its student script's temperature for cutmix
    (validate/train_FKD.sh). Epochs and batch are small-set values (the reference: 300 × 1024)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(50, ge=1)  # relabel batch: CutMix partners are drawn within it; LPLD's batch unit
    teacher: ExpertConfig = ExpertConfig(model="convnet-bn")
    teacher_epoch: float | None = Field(None, ge=0, allow_inf_nan=False)  # default: the teacher's last epoch
    kind: Literal["logits", "probs"] = "logits"
    dtype: Literal["float16", "float32"] = "float16"
    temperature: float = Field(20.0, gt=0, allow_inf_nan=False)  # probs are stored at T; logits are softened at replay
    top_k: int | None = Field(None, ge=1)  # FKD's label quantization: top-k probabilities + indices
    cutmix: bool = True
    mix_per: Literal["batch", "sample"] = "batch"  # one CutMix λ and box per relabel batch (the reference) or per sample
    seed: int = 42  # the reference's --fkd-seed
    teacher_weights: PretrainedConfig | None = None  # a pretrained teacher (`--teacher-weights`) instead of `teacher`
    flip: bool | None = None  # a horizontal flip per sample (the reference's); default: unless the dataset's DSA has none (digits)

    @model_serializer(mode="wrap")
    def _dump(self, handler):  # unset options are left out, so stored relabels made before them still match
        return omit_none(handler(self), "teacher_weights", "flip")

    def flips(self, dataset: str) -> bool:
        """Whether samples are flipped: as set, else as the dataset's student augmentation is (`strategy_for`)."""
        return self.flip if self.flip is not None else "flip" in strategy_for(dataset).split("_")

    def settings(self, dataset: str, precision: str = "fp32") -> dict:
        """What a stored relabel records and is matched on: the config, with the flip rule resolved,
        and the precision the teacher labels at (each recorded only where it is not the reference's,
        so relabels made before either still match: labels made under autocast are not fp32's)."""
        flip = {} if self.flips(dataset) else {"flip": False}
        autocast = {} if precision == "fp32" else {"precision": precision}
        return {k: v for k, v in self.model_dump().items() if k != "flip"} | flip | autocast

    @model_validator(mode="after")
    def _top_k_stores_probs(self) -> "RelabelConfig":
        if self.top_k is not None and self.kind != "probs":
            raise ConfigError("--top-k stores the k largest probabilities and their indices: add --label-kind probs")
        return self

    @model_validator(mode="after")
    def _teacher_epoch_was_trained(self) -> "RelabelConfig":  # here, as build_teacher's own check names `ladd label`'s --labeler-epoch
        if self.teacher_weights is None and self.teacher_epoch is not None and self.teacher_epoch > self.teacher.epochs:
            raise ConfigError(f"--teacher-epoch {self.teacher_epoch:g} is outside the trained range 0..{self.teacher.epochs}")
        return self


def relabel(
    art: Artifact, artifact_dir: Path, dataset: Dataset, cfg: RelabelConfig, runtime: Runtime, *, overwrite: bool = False
) -> tuple[dict, Path]:
    """Write (or resume) the relabel into `artifact_dir/relabel.partial/`, or find the artifact's
    own `relabel/` already made so; returns its summary for the manifest and its folder."""
    n, classes = len(art.images), dataset.num_classes
    if cfg.top_k is not None and cfg.top_k > classes:
        raise ConfigError(f"--top-k {cfg.top_k} is larger than the number of classes ({classes})")
    installed, directory = Path(artifact_dir) / RELABEL_DIR, Path(artifact_dir) / PARTIAL
    images_sha = art.manifest["files"]["images.safetensors"]["sha256"]  # a saved artifact's, verified on load
    settings = cfg.settings(dataset.name, runtime.speed.precision)

    def made_so(info):
        return info["config"] == settings and info["images_sha256"] == images_sha

    def look() -> tuple[dict, dict]:
        sweep(directory)  # rank 0 alone: what an interrupted write left
        return read_info(installed), read_info(directory)

    stored, info = dist.first(look)
    if stored and not made_so(stored) and not overwrite:
        raise ArtifactError(f"{installed} holds a relabel made with other settings or images: pass --overwrite to replace it")
    if info and not made_so(info):
        if not overwrite:
            raise ArtifactError(
                f"{directory} holds an unfinished relabel made with other settings or images: pass --overwrite to replace it"
            )
        info = {}
    teacher_cfg = LabelConfig(method="soft", labeler=cfg.teacher, epoch=cfg.teacher_epoch, labeler_weights=cfg.teacher_weights)
    teacher, provenance, train_flops = build_teacher(dataset, teacher_cfg, runtime)
    teacher.eval()

    def same_teacher(info):
        return info["teacher"]["checkpoint_sha256"] == provenance["checkpoint_sha256"]

    if stored and made_so(stored) and same_teacher(stored):
        return _summary(stored), installed
    if info and not same_teacher(info):
        if not overwrite:
            raise ArtifactError(
                f"{directory} holds epochs labelled by another teacher (checkpoint SHA-256 "
                f"{info['teacher']['checkpoint_sha256'][:12]}…, now {provenance['checkpoint_sha256'][:12]}…): "
                f"pass --overwrite to start it again"
            )
        info = {}
    if not info:
        info = {
            "kind": cfg.kind,
            "dtype": cfg.dtype,
            "temperature": cfg.temperature,
            "top_k": cfg.top_k,
            "epochs": cfg.epochs,
            "samples": n,
            "classes": classes,
            "batch_size": cfg.batch_size,
            "mix_per": cfg.mix_per,
            "images_sha256": images_sha,
            "sample_order": "row k of epoch e is image order[e, k]",
            "config": settings,
            "teacher": provenance,
            "files": [],
            "complete": False,
        }
        dist.first(lambda: _start(directory, info))
    _, _, h, w = art.images.shape
    images = art.images.to(runtime.device)
    done = len(info["files"])
    with progress.bar("relabel", cfg.epochs) as advance:
        advance(done)
        for start in range(done, cfg.epochs, dist.world()):  # a round: epoch start + r on rank r
            e, digest = start + dist.rank(), None
            if e < cfg.epochs:
                gen = generator(cfg.seed * 1_000_003 + e)
                epoch = sample_epoch(n, cfg.batch_size, h, w, gen, cutmix=cfg.cutmix, mix_per=cfg.mix_per, flip=cfg.flips(dataset.name))
                digest = write_epoch(directory, e, epoch, _labels(teacher, images, dataset, epoch, cfg, runtime))
            written = [d for d in dist.gather(digest) if d is not None]  # in rank order = epoch order
            info["files"] += written
            dist.first(lambda: write_info(directory, info))
            advance(len(written))
    info["complete"] = True
    info["flops"] = {
        "unit": flops.UNIT,
        "teacher_train": train_flops,
        "label_generation": flops.per_sample(teacher, dataset.shape, backward=False) * n * cfg.epochs,
    }
    dist.first(lambda: write_info(directory, info))
    return _summary(info), directory


def _start(directory: Path, info: dict) -> None:
    """A fresh relabel folder holding only `info` (what was there made with other settings or
    another teacher, or before its relabel.json, is removed)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    write_info(directory, info)


def _summary(info: dict) -> dict:
    """What the artifact manifest repeats of relabel.json."""
    keys = ("epochs", "samples", "kind", "dtype", "top_k", "temperature", "teacher")
    return {"dir": RELABEL_DIR, **{k: info[k] for k in keys}}


@torch.no_grad()
def _labels(teacher, images, dataset: Dataset, epoch, cfg: RelabelConfig, runtime: Runtime) -> dict[str, torch.Tensor]:
    """The teacher's logits (or probabilities at T, or their top-k) on every augmented sample:
    the teacher under the runtime's precision (fp32 logits), the epoch's logits kept on the device
    and copied to the host once."""
    dtype = getattr(torch, cfg.dtype)
    out = []
    with runtime.settings(), runtime.autocast():
        for rows in torch.arange(len(epoch.order)).split(cfg.batch_size):
            x = render(images, dataset.mean, dataset.std, epoch, rows)
            out.append(teacher.logits(x))
    logits = runtime.fetch(torch.cat(out))
    runtime.wait()
    if cfg.kind == "logits":
        return {"labels": logits.to(dtype)}
    probs = (logits / cfg.temperature).softmax(-1)
    if cfg.top_k is None:
        return {"labels": probs.to(dtype)}
    top = probs.topk(cfg.top_k, dim=-1)
    return {"label_values": top.values.to(dtype), "label_index": top.indices.to(torch.int16)}
