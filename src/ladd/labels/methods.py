"""The registered label methods: `ladd` (dense + global soft labels from an early-stopped
teacher), `soft` (the soft-label baseline: global soft labels only) and `bptt` (global labels
learned by truncated back-propagation through students, no teacher)."""

from __future__ import annotations

import hashlib
from pathlib import Path


from ladd.artifact import Artifact
from ladd.augment.subsample import crop_geometry, repeated_crops
from ladd.core.errors import ConfigError
from ladd.core.logs import logger
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.cost import flops
from ladd.core.cache import entry
from ladd.core import dist
from ladd.core.io import sweep
from ladd.experts import ensure_expert, load_expert
from ladd.experts.pretrained import load_pretrained
from ladd.images.optimize import STATE
from ladd.labels.bptt import learn_labels
from ladd.labels import LABEL_METHODS, LabelConfig, Labels
from ladd.labels.dense import dense_labels, global_labels
from ladd.labels.soft import Teacher, keep_top_k
from ladd.train.loop import accuracy


def teacher_epoch(cfg: LabelConfig) -> float:
    epoch = cfg.labeler.epochs if cfg.epoch is None else cfg.epoch
    if not 0 <= epoch <= cfg.labeler.epochs:
        raise ConfigError(f"--labeler-epoch {epoch:g} is outside the trained range 0..{cfg.labeler.epochs}")
    return epoch


def build_teacher(dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> tuple[Teacher, dict, int]:
    """Train or reuse the K experts, load them at the chosen epoch; returns the teacher, its
    provenance and the training FLOPs spent up to that checkpoint."""
    if cfg.top_k is not None and cfg.top_k > dataset.num_classes:
        raise ConfigError(f"--top-k {cfg.top_k} is larger than the number of classes ({dataset.num_classes})")
    if cfg.labeler_weights is not None:
        return pretrained_teacher(dataset, cfg, runtime)
    epoch = teacher_epoch(cfg)
    members, provenance, train_flops = [], [], 0
    for i in range(cfg.ensemble):
        expert_cfg = cfg.labeler.model_copy(update={"seed": cfg.labeler.seed + i})
        directory = cfg.labeler_dir
        if directory is not None and cfg.ensemble > 1:
            directory = str(Path(directory) / f"member_{i}")
        directory, info = ensure_expert(dataset, expert_cfg, directory, runtime)
        model, prov = load_expert(directory, epoch, dataset, runtime)
        members.append(model)
        provenance.append(prov)
        train_flops += flops.training(model, dataset.shape, int(info["samples_seen"] * epoch / cfg.labeler.epochs))  # up to the checkpoint
    teacher = Teacher(members, cfg.temperature, cfg.top_k)
    test_acc = (
        provenance[0]["test_acc"]
        if cfg.ensemble == 1
        else accuracy(teacher, dataset.test.images, dataset.test.labels, dataset.mean, dataset.std)
    )
    summary = {
        **provenance[0],
        "test_acc": round(test_acc, 6),
        "ensemble": cfg.ensemble,
        "temperature": cfg.temperature,
        "top_k": cfg.top_k,
    }
    if cfg.ensemble > 1:
        summary["members"] = provenance
    return teacher, summary, train_flops


def pretrained_teacher(dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> tuple[Teacher, dict, int]:
    """A labeler (or relabel teacher) from a weights file (`ladd.experts.pretrained`): nothing is
    trained (0 FLOPs), and there is one checkpoint, so neither an epoch nor an ensemble applies."""
    if cfg.epoch is not None or cfg.ensemble > 1:
        raise ConfigError("a teacher from weights has no epochs and no ensemble members: leave out the teacher epoch and --ensemble")
    model, provenance = load_pretrained(dataset, cfg.labeler_weights, runtime, cfg.labeler_dir)
    summary = {**provenance, "ensemble": 1, "temperature": cfg.temperature, "top_k": cfg.top_k}
    return Teacher([model], cfg.temperature, cfg.top_k), summary, 0


def _cost(teacher: Teacher, dataset: Dataset, train_flops: int, forwards: int, dense_forwards: int | None = None) -> dict:
    """The label stage's FLOPs: the labeler's training and its `forwards`, of which `dense_forwards`
    made dense labels, so an evaluation charges each method only the labels it trains on."""
    per_forward = flops.per_sample(teacher, dataset.shape, backward=False)
    split = {} if dense_forwards is None else {"dense_generation": per_forward * dense_forwards}
    return {"unit": flops.UNIT, "labeler_train": train_flops, "label_generation": per_forward * forwards, **split}


@LABEL_METHODS.register("ladd", aliases=("dense",))
def ladd_labels(art: Artifact, dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> Labels:
    if cfg.keep_soft and art.soft_labels is None:
        raise ConfigError(
            "--keep-soft-labels: the artifact holds no global soft labels to keep "
            "(MTT learns them with its images: --images mtt --param learn_labels=true)"
        )
    for side in dataset.shape[1:]:
        crop_geometry(side, cfg.n, cfg.r)  # refuse a bad N/R before spending time on a labeler
    teacher, provenance, train_flops = build_teacher(dataset, cfg, runtime)
    repeated = repeated_crops(dataset.shape[1:], cfg.n, cfg.r)
    if repeated:
        logger.warning(repeated)
    dense, soft = dense_labels(teacher, art.images, dataset.mean, dataset.std, cfg.n, cfg.r, runtime=runtime)
    manifest = {"subsample": {"n": cfg.n, "r": cfg.r, **({"repeated_crops": repeated} if repeated else {})}, "labeler": provenance}
    forwards = len(art.images) * (cfg.n**2 + 1)  # N² views and the whole image
    dense_forwards = len(art.images) * cfg.n**2
    if cfg.keep_soft:  # the global soft labels the artifact already holds (learned with MTT's images) compose with the dense ones
        soft, manifest["soft_from"] = art.soft_labels.float(), art.manifest["labels"]["method"]
        dense_forwards = forwards  # the labeler's soft labels are dropped: all it ran served the dense ones
    return Labels(soft, dense, manifest, _cost(teacher, dataset, train_flops, forwards, dense_forwards))


@LABEL_METHODS.register("soft", aliases=("expert", "expert-soft"))
def soft_labels(art: Artifact, dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> Labels:
    teacher, provenance, train_flops = build_teacher(dataset, cfg, runtime)
    soft = global_labels(teacher, art.images, dataset.mean, dataset.std, runtime=runtime)
    return Labels(soft, None, {"labeler": provenance}, _cost(teacher, dataset, train_flops, len(art.images)))


@LABEL_METHODS.register("bptt", aliases=("learned",))
def bptt_labels(art: Artifact, dataset: Dataset, cfg: LabelConfig, runtime: Runtime) -> Labels:
    """Learned against the training split (never the test split); checkpointed under the cache
    and resumed automatically when the same images and settings are labelled again. Under torchrun
    rank 0 learns them as one process would (one checkpoint writer) and the others take its labels."""
    p = cfg.bptt
    content = hashlib.sha256(art.images.numpy().tobytes() + art.labels.numpy().tobytes()).hexdigest()
    directory = entry("labels", f"bptt-{dataset.name}", [dataset.name, list(dataset.class_names), p.model_dump(), content])

    def learn() -> tuple:
        with dist.alone():
            sweep(directory)
            return learn_labels(
                art.images, art.labels, dataset.train, dataset, p, runtime, checkpoint_dir=directory, resume=(directory / STATE).exists()
            )

    with dist.locked(directory, "learning labels into"):  # another job waits, then resumes the finished state
        soft, info = dist.first(learn)
    if cfg.top_k is not None:
        soft = keep_top_k(soft, cfg.top_k)
    cost = {"unit": flops.UNIT, "labeler_train": 0, "label_generation": info.pop("flops")}  # counted, double backward included
    return Labels(soft, None, {"bptt": {**p.model_dump(), **info}}, cost)
