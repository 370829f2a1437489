"""Evaluation protocol: train fresh students on an artifact with a named protocol's recipe
(`eval/protocols/*.toml`) for several seeds and architectures, test each once on the real test
split after the final epoch, and report mean ± std (population std, numpy's default, as the
reference code reports). No epoch, lr or checkpoint is ever picked by test accuracy: a tuned
student lr (`select_lr`) is chosen on a validation split carved from the training split
(`data.holdout`), and each row records which split chose what. Under torchrun the students of an
`evaluate` call are independent: `train_plans` spreads them over the ranks (or trains each under
DDP), and every rank ends with one process's rows."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Annotated, Literal

import numpy as np
import torch
from torch import nn
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ladd.artifact import Artifact
from ladd.core import dist, progress, track
from ladd.core.errors import ArtifactError, ConfigError, Diverged, RunError
from ladd.core.logs import logger
from ladd.core.progress import log
from ladd.augment.dsa import strategy_for
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset, quantize
from ladd.cost import flops
from ladd.cost.storage import component_bytes
from ladd.data import holdout, stream
from ladd.eval.protocols import DEFAULT, Protocol, load_protocol, shipped as shipped_protocols
from ladd.eval.rows import Row
from ladd.experts import build_for
from ladd.labels.replay import Pruning, Replay, prune_units, units_per_epoch
from ladd.models import MODELS
from ladd.train.loop import Recipe, TrainData, TrainLog, class_accuracy, resumes_at, train
from ladd.train.terms import method_terms

# Which stored component each loss term reads: a method is charged for the labels it uses.
TERM_COMPONENTS = {
    "global-hard": "labels",
    "local-hard": "labels",
    "global-soft": "soft_labels",
    "local-dense": "dense_labels",
    "replay": "relabel",  # the six stored relabel components (crop, flip, CutMix index/λ/box, labels)
}


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    methods: tuple[str, ...] = Field(("baseline", "ladd"), min_length=1)
    models: tuple[str, ...] = Field(("convnet",), min_length=1)
    seeds: int = Field(3, ge=1)
    # a shipped protocol name (dc, dc-cpu, glad, fkd, lic) or a .toml path; None = each method's default (`protocol_for`)
    protocol: str | None = None
    default_protocol: str = DEFAULT  # that default for methods that do not replay a stored relabel (a CLI preset's protocol)
    # None = the protocol's value; a number overrides it (recorded as an override)
    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    # student lr candidates chosen on a validation split carved from the training split
    select_lr: tuple[float, ...] = ()
    val_per_class: int = Field(50, ge=1)  # validation images per class for that choice
    augment: bool | None = None  # None = the protocol's; False trains without DSA (DD-Ranking's ARS)
    # K of the N² local views per image and step: an int, "all", or "auto" (see `crops_for`)
    crops_per_step: int | Literal["all", "auto"] = "all"
    local_reduction: Literal["mean", "sum"] | None = None  # over the N² views; None = `local_reduction_for` the labels
    # λ in global + λ·local (LADD Eq. 5: 1), chosen on validation (`ladd leaderboard`); "learned": every
    # term's weight trains with the student (`ladd.train.terms.LearnedWeights`)
    local_weight: Annotated[float, Field(gt=0)] | Literal["learned"] = 1.0
    ema: float | None = Field(None, ge=0, lt=1)  # β of an EMA of the student's weights; 0 = none; None = the protocol's
    soft_loss: Literal["ce", "kl"] | None = None  # soft/dense targets: soft cross-entropy or KL; None = the protocol's
    pruning: Pruning = Pruning()  # which stored labels a replayed relabel (method fkd) keeps
    # record test accuracy every K epochs against the deployment FLOPs spent so far (LADD Fig. 3's curves)
    curve_every: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _known_names(self) -> "EvalConfig":
        """Unknown methods or models fail here, before any training, not mid-evaluation."""
        if isinstance(self.crops_per_step, int) and self.crops_per_step < 1:
            raise ConfigError(f"--crops-per-step {self.crops_per_step} must be >= 1, 'all' or 'auto'")
        # the same students twice would train into one checkpoint folder at once (and say nothing new)
        seen: dict[tuple[str, ...], str] = {}
        for method in self.methods:
            terms = tuple(sorted(method_terms(method)))
            if terms in seen:
                raise ConfigError(f"--methods {seen[terms]} and {method} train the same terms ({'+'.join(terms)}): give one")
            seen[terms] = method
        models = [MODELS.canonical(model) for model in self.models]
        if len(set(models)) < len(models):
            raise ConfigError(f"--model {','.join(self.models)} names a model twice: give each once")
        if len(set(self.select_lr)) < len(self.select_lr):
            raise ConfigError(f"--select-lr {','.join(map(str, self.select_lr))} names a learning rate twice: give each once")
        if any(lr <= 0 for lr in self.select_lr):
            raise ConfigError(f"--select-lr {','.join(map(str, self.select_lr))}: every learning rate must be > 0")
        if self.select_lr and self.lr is not None:
            raise ConfigError(
                "give either --lr (one fixed learning rate) or --select-lr (candidates chosen on a validation split), not both"
            )
        if self.select_lr and self.curve_every is not None:
            raise ConfigError(
                "the FLOPs curve reads the test split during training, which --select-lr's candidates must not: "
                "choose the lr with --select-lr first, then pass it with --lr"
            )
        for method in self.methods:
            protocol_for(self, method)
        return self


# Students replaying a stored relabel (method fkd) fit a KL to labels softened at the relabel's
# temperature (T = 20): its gradients are about T² smaller than a cross-entropy's, which AdamW's
# steps ignore but SGD's do not. Digits, IPC 10 random, 20 relabel epochs, convnet students for
# 100 epochs, 1 seed: 85% under fkd or lic (AdamW), 16% under dc-cpu and 10% under glad (SGD): chance.
REPLAY_PROTOCOL = "fkd"


def protocol_for(cfg: EvalConfig, method: str) -> Protocol:
    """The protocol `method`'s students train under: the one given, else `fkd` for a method that
    replays a stored relabel and `cfg.default_protocol` for the others. A given protocol that would train a
    replaying method to chance (not AdamW) is refused rather than run."""
    replays = "replay" in method_terms(method)
    if cfg.protocol is None:
        return load_protocol(REPLAY_PROTOCOL if replays else cfg.default_protocol)
    protocol = load_protocol(cfg.protocol)
    if replays and protocol.optimizer != "adamw":
        adamw = ", ".join(n for n in shipped_protocols() if load_protocol(n).optimizer == "adamw")
        raise ConfigError(
            f"--protocol {cfg.protocol} trains method {method} to chance: its KL on temperature-softened stored labels "
            f"needs AdamW, not {protocol.optimizer}; give an AdamW protocol ({adamw}), or leave --protocol out "
            f"to train {method} under protocol {REPLAY_PROTOCOL}"
        )
    return protocol


def methods_for(label_method: str | None) -> tuple[str, ...]:
    """Default comparison: hard labels against what the label stage made (LADD's dense labels,
    global soft labels); squeezed images (LIC, RDED): their expanded tiles with the hard label
    against the tiles' region labels (Eq. 9)."""
    if label_method is None:
        return ("baseline",)
    return {"ladd": ("baseline", "ladd"), "region": ("local-hard", "local-dense")}.get(label_method, ("baseline", "soft"))


def default_methods(art: Artifact) -> tuple[str, ...]:
    return methods_for(art.manifest.get("labels", {}).get("method"))


# what each need of a method's terms is, and how an artifact lacking it gets it
NEEDS = {
    "soft_labels": ("global soft labels", "run `ladd label ARTIFACT` first"),
    "dense_labels": ("dense labels", "run `ladd label ARTIFACT --labels ladd` first"),
    "relabel": ("stored relabel labels", "run `ladd relabel ARTIFACT` first"),
    "geometry": ("the sub-sampling geometry (N, R)", "run `ladd label ARTIFACT --labels ladd` first"),
}


def _unmet(methods: tuple[str, ...], held: set[str]) -> tuple[str, str] | None:
    """The first method whose terms need what `held` lacks, and that need: a TERM_COMPONENTS
    component, or "geometry" (the sub-sampler's (N, R), which local views are cut by)."""
    for method in methods:
        for term in method_terms(method):
            needs = (TERM_COMPONENTS[term], "geometry") if term.startswith("local") else (TERM_COMPONENTS[term],)
            missing = next((n for n in needs if n not in held), None)
            if missing is not None:
                return method, missing
    return None


def check_methods(art: Artifact, methods: tuple[str, ...]) -> None:
    """Every method trains on what the artifact holds: refused before any student trains."""
    held = {*art.components(), *(["relabel"] if art.relabel is not None else []), *(["geometry"] if art.geometry is not None else [])}
    missing = _unmet(methods, held)
    if missing is not None:
        method, need = missing
        what, fix = NEEDS[need]
        raise ArtifactError(f"method {method} trains on {what}, which the artifact lacks: {fix}")


# what each built-in label method adds to the hard labels (a plugin's is checked on the artifact it makes)
LABELS_MADE = {"ladd": {"soft_labels", "dense_labels"}, "soft": {"soft_labels"}, "bptt": {"soft_labels"}}
# whether a built-in image method's images carry the tile grid local views train on (LIC and RDED's
# squeezed images do); LADD's labels bring their own sub-sampler geometry
TILED_IMAGES = {
    "lic": True,
    "rded": True,
    **dict.fromkeys(("random", "dm", "dc", "dsa", "mtt", "herding", "sre2l", "lpld", "import"), False),
}


def check_label_stage(label_method: str, methods: tuple[str, ...], image_method: str) -> None:
    """Every method trains on what a built-in label stage will make (`LABELS_MADE`) on the images of
    `image_method` (`TILED_IMAGES`), refused before anything runs."""
    if label_method not in LABELS_MADE:
        return
    tiled = label_method == "ladd" or TILED_IMAGES.get(image_method, True)  # a plugin's images may carry a grid
    made = {"labels", *LABELS_MADE[label_method], *(["geometry"] if tiled else [])}
    missing = _unmet(methods, made)
    if missing is not None:
        method, need = missing
        fix = f"choose methods it trains (e.g. {','.join(methods_for(label_method))}) or other --labels"
        if need == "geometry":
            raise ConfigError(
                f"--methods {method} trains on {NEEDS[need][0]}, which neither --labels {label_method} nor --images "
                f"{image_method} makes: {fix}, or --images lic/rded"
            )
        raise ConfigError(f"--methods {method} trains on {NEEDS[need][0]}, which --labels {label_method} does not make: {fix}")


# LADD's local term when no reduction is given: the mean over the N² views (docs/methods.md, "Where ladd differs from the papers")
LADD_REDUCTION = "mean"


def local_reduction_for(art: Artifact) -> str:
    """How the local-view losses combine unless --local-reduction says otherwise: region labels
    (LIC, RDED) sum over the tiles as LIC's Eq. 9 is written; LADD's dense labels use LADD_REDUCTION."""
    return "sum" if art.manifest.get("labels", {}).get("method") == "region" else LADD_REDUCTION


AUTO_VIEWS_PER_EPOCH = 500


def crops_for(setting: int | str, n_images: int, n: int) -> int | None:
    """K for a set of `n_images`: "all" → every view; "auto" → about 500 local views per epoch,
    at least 5 and at most N²; a number, at most N². On mnist5k (benchmarks/ladd_accuracy.py, 3 seeds) K = 5 matched all 25
    views at IPC 10 (95.20 ± 0.37 vs 94.93 ± 0.05, 4.4× faster) but lost 2 points at IPC 1
    (75.10 ± 1.85 vs 77.33 ± 1.40), where all views are cheap anyway."""
    if setting == "all":
        return None
    if setting == "auto":
        return min(n * n, max(5, math.ceil(AUTO_VIEWS_PER_EPOCH / n_images)))
    return min(int(setting), n * n)  # more than N² draws every view: rows record the K used


def train_data(art: Artifact, dataset: Dataset) -> TrainData:
    """What a student trains on: the artifact's images and every label it stores."""
    return TrainData(art.images, art.labels, dataset.mean, dataset.std, art.soft_labels, art.dense_labels, art.geometry)


@dataclass
class _Job:
    """One (method, model) of an evaluation: what its row records before training, and its plans (one per lr candidate)."""

    recorded: dict
    protocol: Protocol
    model_name: str
    lr: float | None
    lr_source: str
    plans: list[Plan]


@dataclass
class _Evaluation:
    """One artifact's evaluation before its students train: its jobs and what its rows record."""

    art: Artifact
    cfg: EvalConfig
    jobs: list[_Job]
    val: object  # the validation split an lr is selected on, or None
    storage: dict
    distill_flops: int | None
    ipc: int


def evaluate(art: Artifact, dataset: Dataset, cfg: EvalConfig, runtime: Runtime) -> list[dict]:
    """One result row per (method, model) (`evaluate_all` of one artifact)."""
    return evaluate_all([(art, cfg)], dataset, runtime)[0]


def evaluate_all(requests: list[tuple[Artifact, EvalConfig]], dataset: Dataset, runtime: Runtime) -> list[list[dict]]:
    """The rows of each (artifact, config) evaluation. Every student of the call (evaluations ×
    methods × models × lr candidates × seeds) is trained by one `train_plans`, so under torchrun
    they spread over the ranks together (e.g. baseline++'s beside the evaluation it is compared with)."""
    for art, cfg in requests:
        check_methods(art, cfg.methods)
    prepared = [_prepare(art, dataset, cfg, runtime) for art, cfg in requests]
    trained = iter(train_plans([p for ev in prepared for job in ev.jobs for p in job.plans], dataset, runtime))
    return [_score(ev, trained, dataset) for ev in prepared]


def _prepare(art: Artifact, dataset: Dataset, cfg: EvalConfig, runtime: Runtime) -> _Evaluation:
    learned_lr = (art.manifest.get("images", {}).get("learned") or {}).get("lr")  # MTT learns the student lr
    data = train_data(art, dataset)
    storage = art.manifest.get("storage") or component_bytes(art.components())
    made = art.manifest.get("flops", {})
    distill_flops = art.manifest.get("images", {}).get("flops")  # None: unknown (imported, or made before ladd counted it)
    ipc = art.images.shape[0] // dataset.num_classes
    geometry = art.geometry
    crops = crops_for(cfg.crops_per_step, len(art.images), geometry[0] if geometry else 1)
    val = validation_split(dataset, cfg.val_per_class, art.images) if cfg.select_lr else None  # carved once, shared
    reduction = cfg.local_reduction or local_reduction_for(art)
    jobs = []  # per (method, model): what its row records and its plans (one per lr candidate)
    for method in cfg.methods:
        protocol = protocol_for(cfg, method)
        if cfg.protocol is None and protocol.name == REPLAY_PROTOCOL:
            log(
                f"method {method}: protocol {REPLAY_PROTOCOL}, the default for replaying a stored relabel "
                "(an SGD protocol trains it to chance)"
            )
        soft_loss = cfg.soft_loss or protocol.soft_loss
        learned = cfg.local_weight == "learned"
        weight = 1.0 if learned else cfg.local_weight  # the fixed λ the terms are built with
        terms = method_terms(method, crops, reduction, soft_loss, weight)
        used = sorted({TERM_COMPONENTS[t] for t in terms})
        label_zip = sum(storage[c]["zip"] for c in used if c in storage)
        label_raw = sum(storage[c]["raw"] for c in used if c in storage)
        uses_labeler = any(c in ("soft_labels", "dense_labels") for c in used)
        label_flops = label_cost(made, used)
        relabel = _relabel_pool(art, cfg, storage["images"]["raw"]) if "relabel" in used else None
        if relabel is not None:
            label_raw += relabel["bytes_raw"]
            label_zip += relabel["bytes_zip"]
            label_flops += relabel["flops"] - (shared_training(art) if label_flops else 0)

        # a replayed relabel: the pruned pool is shared; each student draws its units by its own seed (train())
        trained_on = (
            data
            if relabel is None
            else replace(
                data,
                replay=Replay(
                    art.relabel,
                    art.images.to(runtime.device),
                    dataset.mean,
                    dataset.std,
                    relabel["kept"],
                    relabel["per_epoch"],
                    cfg.pruning.batches,
                ),
            )
        )
        local = any(t.startswith("local") for t in terms)
        learns_weights = learned and local and len(terms) > 1  # a lone term has nothing to balance: plain λ = 1
        labeler_acc = art.manifest.get("labels", {}).get("labeler", {}).get("test_acc") if uses_labeler else None
        recorded = {  # what the method's rows record before any student trains
            "method": method,
            "terms": list(terms),
            "label_components": used,
            "label_bytes_raw": label_raw,
            "label_bytes_zip": label_zip,
            "label_overhead_pct": 100.0 * label_zip / storage["images"]["zip"],
            "flops_labels": label_flops,
            "crops_per_step": (crops or geometry[0] ** 2) if local else None,
            "local_reduction": reduction if local else None,
            "local_weight": ("learned" if learns_weights else weight) if local else None,
            "soft_loss": soft_loss,
            "labeler_test_acc": labeler_acc if uses_labeler or relabel is None else art.relabel.info["teacher"]["test_acc"],
            **(
                {}
                if relabel is None
                else {k: v for k, v in relabel.items() if k not in ("kept", "per_epoch", "bytes_raw", "bytes_zip", "flops")}
            ),
        }
        batch_size = cfg.batch_size if relabel is None else replay_batch_size(art, cfg)

        for model_name in cfg.models:
            if cfg.select_lr:
                lr, lr_source = None, f"selected on the validation split ({cfg.val_per_class} per class of the training split)"
            elif cfg.lr is not None:  # asked for by name: wins over a learned lr
                lr, lr_source = cfg.lr, "eval config"
            elif learned_lr is not None and protocol.optimizer == "sgd":  # MTT learns a plain SGD step size
                lr, lr_source = learned_lr, "learned by the image method"
            elif learned_lr is not None:
                lr, lr_source = protocol.lr_for(model_name), f"protocol {protocol.name} (the images' learned lr is an SGD step size)"
            else:
                lr, lr_source = protocol.lr_for(model_name), f"protocol {protocol.name}"
            plans = [
                Plan(
                    trained_on,
                    terms,
                    protocol.recipe(
                        model_name,
                        strategy_for(dataset.name),
                        epochs=cfg.epochs,
                        lr=c,
                        batch_size=batch_size,
                        augment=cfg.augment,
                        images=len(art.images),
                        ema=cfg.ema,
                        term_weights="learned" if learns_weights else None,
                    ),
                    model_name,
                    cfg.seeds,
                    f"{method} lr {c:g} (validation)" if cfg.select_lr else method,
                    cfg.curve_every,
                )
                for c in cfg.select_lr or (lr,)
            ]
            jobs.append(_Job(recorded, protocol, model_name, lr, lr_source, plans))
    return _Evaluation(art, cfg, jobs, val, storage, distill_flops, ipc)


def _score(ev: _Evaluation, trained, dataset: Dataset) -> list[dict]:
    """`ev`'s rows from its students, the next ones `trained` yields."""
    art, cfg, val, storage, distill_flops, ipc = ev.art, ev.cfg, ev.val, ev.storage, ev.distill_flops, ev.ipc
    rows, per_input_of = [], {}
    for job in ev.jobs:
        candidates, chosen, selection, lr = [next(trained) for _ in job.plans], 0, None, job.lr
        if cfg.select_lr:
            chosen, selection = select_lr(cfg.select_lr, candidates, val)
            lr = cfg.select_lr[chosen]
        elif candidates[0].diverged is not None:
            raise candidates[0].diverged
        students, recipe = candidates[chosen], job.plans[chosen].recipe
        accs, per_class = students.test(dataset)
        # one input costs the same in every student of a model: measured once per model, on a fresh student
        if job.model_name not in per_input_of:
            per_input_of[job.model_name] = flops.training(build_for(dataset, job.model_name, 0), dataset.shape, 1)
        per_input = per_input_of[job.model_name]
        deploy = per_input * mean_count(students.inputs)
        row = {
            **job.recorded,
            "model": job.model_name,
            "dataset": dataset.name,
            "ipc": ipc,
            "images_method": art.manifest.get("images", {}).get("method"),
            "distilled_with": art.manifest.get("images", {}).get("model"),  # the network learned images were made with
            "acc_mean": float(np.mean(accs)),
            "acc_std": float(np.std(accs)),
            "n_seeds": cfg.seeds,
            "accs": accs,
            "class_acc_mean": np.mean(per_class, axis=0).tolist(),
            "image_bytes_raw": storage["images"]["raw"],
            "image_bytes_zip": storage["images"]["zip"],
            "flops_distill": distill_flops,
            "flops_deploy": deploy,
            "flops": (distill_flops or 0) + job.recorded["flops_labels"] + deploy,
            "seconds": float(np.mean(students.seconds)),
            "trained_by": students.layout,
            "epochs": recipe.epochs,
            "lr": lr,
            "lr_source": job.lr_source,
            "learned_weights": students.log.term_weights,
            **protocol_fields(job.protocol, cfg, recipe),
            "lr_selection": selection,
            **({} if students.curves is None else {"curve": curve_points(students.curves, per_input)}),
        }
        rows.append({**{k: row[k] for k in Row.model_fields if k in row}, **row})  # in the schema's order, as `Row` dumps it
    return rows


def mean_count(counts: list[int]) -> int:
    """The seeds' mean number of inputs forwarded, to the nearest input: a row's deployment FLOPs
    are one student's, and a replay of uneven relabel batches forwards a seed-dependent number."""
    return round(sum(counts) / len(counts))


def curve_points(curves: list[list[tuple[int, int, float]]], per_input: int) -> list[dict]:
    """Per recorded epoch: deployment FLOPs spent so far and the test accuracy of every seed."""
    points = []
    for recorded in zip(*curves):  # the seeds record at the same epochs
        accs = [acc for _, _, acc in recorded]
        points.append(
            {
                "epoch": recorded[0][0],
                "flops_deploy": per_input * mean_count([samples for _, samples, _ in recorded]),
                "accs": accs,
                "acc_mean": float(np.mean(accs)),
                "acc_std": float(np.std(accs)),
            }
        )
    return points


def label_cost(made: dict, used: list[str]) -> int:
    """The label FLOPs a method trained on the components `used` is charged, from the artifact's
    `made` FLOPs: the labeler's training once if it made any of them, and the forwards that made
    them (LADD's soft labels cost one forward per image, its dense labels N²: a global-soft student
    is not charged the dense views). Labels not split by kind are charged whole to any use."""
    total, dense = made.get("label_generation", 0), made.get("dense_generation")
    if not {"soft_labels", "dense_labels"} & set(used):
        return 0
    spent = total if dense is None else ("soft_labels" in used) * (total - dense) + ("dense_labels" in used) * dense
    return made.get("labeler_train", 0) + spent if dense is None or spent else 0


def shared_training(art: Artifact) -> int:
    """Training FLOPs a relabel's teacher shares with the artifact's labeler (or observer) when both
    are checkpoints of one expert run (one folder, one member): the longer training includes the
    shorter, so a method using both labels is not charged the shorter one again."""
    labels = art.manifest.get("labels", {})
    labeler = labels.get("labeler") or labels.get("observer") or {}
    teacher = art.relabel.info["teacher"]
    one_run = labeler.get("directory") is not None and labeler.get("directory") == teacher.get("directory")
    if not one_run or labeler.get("ensemble", 1) != 1 or teacher.get("ensemble", 1) != 1:
        return 0
    return min(art.manifest["flops"].get("labeler_train", 0), art.relabel.info["flops"]["teacher_train"])


def rounding_rows(art: Artifact, dataset: Dataset, cfg: EvalConfig, runtime: Runtime) -> list[dict]:
    """For float32 images (--float-images): the first method again on the images rounded to the
    uint8 pixels the default stores, so the results say what rounding costs; [] for uint8 images."""
    if not art.images.dtype.is_floating_point:
        return []
    manifest = {k: v for k, v in art.manifest.items() if k != "storage"}  # the rounded images' own bytes
    rounded = replace(art, images=quantize(art.images), manifest=manifest)
    rows = evaluate(rounded, dataset, cfg.model_copy(update={"methods": cfg.methods[:1]}), runtime)
    return [{**r, "method": f"{r['method']} (uint8)", "rounded_of": r["method"]} for r in rows]


def replay_batch_size(art: Artifact, cfg: EvalConfig) -> int | None:
    """A replay of the stored relabel batches trains at the relabel batch size (SRe²L/LPLD refuse
    any other); a shuffled replay at the protocol's or the one given."""
    if cfg.pruning.batches == "shuffled":
        return cfg.batch_size
    stored = art.relabel.batch_size
    if cfg.batch_size not in (None, stored):
        raise ConfigError(
            f"--batch-size {cfg.batch_size}: the student replays the stored relabel batches of {stored} "
            f"(as SRe²L/LPLD); leave --batch-size out, or add --replay-batches shuffled to train in other batches"
        )
    return stored


def _relabel_pool(art: Artifact, cfg: EvalConfig, images_raw: int) -> dict:
    """The pruned label pool of a stored relabel and what it costs: bytes of the six components
    of the kept units only, and teacher FLOPs of training plus labelling those units (every unit
    when a metric chose them: it reads every label)."""
    store = art.relabel
    pruning = cfg.pruning
    kept = prune_units(store, art.labels, pruning)
    positions = torch.cat(kept)
    fraction = len(positions) / (store.epochs * store.samples)
    # all kept: the bytes the relabel stage already measured (zipping GBs of labels again is slow at scale)
    storage = art.manifest["relabel"]["storage"] if fraction == 1 else store.storage(positions)
    made = store.info["flops"]
    raw = sum(b["raw"] for b in storage.values())
    return {
        "kept": kept,
        "per_epoch": units_per_epoch(store, pruning.pool),
        "bytes_raw": raw,
        "bytes_zip": sum(b["zip"] for b in storage.values()),
        # random pruning could label only the kept units; a metric scores every stored label first
        "flops": made["teacher_train"] + int(made["label_generation"] * (fraction if pruning.metric == "random" else 1)),
        "prune": pruning.rho,
        "pool": pruning.pool,
        "replay_batches": pruning.batches,
        "prune_metric": pruning.metric,
        "prune_keep": pruning.keep if pruning.metric != "random" else None,
        "relabel_epochs": store.epochs,
        "relabel_kept_samples": len(positions),
        "relabel_storage": storage,
        "label_to_image_ratio": raw / images_raw,
        "soft_label_to_image_ratio": storage["labels"]["raw"] / images_raw,
    }


def protocol_fields(protocol: Protocol, cfg: EvalConfig, recipe) -> dict:
    """What every row records about how its students were trained and what was read where."""
    overrides = {k: getattr(cfg, k) for k in ("epochs", "lr", "batch_size", "soft_loss", "augment", "ema") if getattr(cfg, k) is not None}
    return {
        "protocol": protocol.name,
        "protocol_source": protocol.source,
        "protocol_overrides": overrides,
        "optimizer": recipe.optimizer,
        "batch_size": recipe.batch_size,
        "schedule": recipe.schedule,
        "ema": recipe.ema,
        "augment": recipe.dsa,
        "reported": "final epoch" + (f" (EMA {recipe.ema} of the weights)" if recipe.ema else "") + ", test split read once per student",
        "selected_on": {"student lr": f"validation split, {cfg.val_per_class} per class carved from the training split"}
        if cfg.select_lr
        else {},
    }


@dataclass(frozen=True)
class Plan:
    """One configuration's students: seeds 0 .. seeds-1 trained on `data` with `terms` and `recipe`."""

    data: TrainData
    terms: dict
    recipe: Recipe
    model_name: str
    seeds: int
    description: str  # progress text; " · model · seed" is added
    curve_every: int | None = None  # record test accuracy every K epochs and after the last


@dataclass
class Students:
    """One plan's students (seed i), each tested later, once. `models` holds the students this
    process trained (every seed unless they were spread over ranks); the rest is known on every rank."""

    models: dict[int, nn.Module]
    seconds: list[float]  # training time per student
    log: TrainLog | None  # the last student's (its learned term weights)
    inputs: list[int]  # inputs forwarded per seed (a replay of uneven relabel batches differs by seed)
    layout: dict  # how the call's students were divided over ranks (`_layout`), plus which rank trained each seed
    curves: list[list[tuple[int, int, float]]] | None = None  # per seed: (epochs done, inputs forwarded, test accuracy)
    diverged: Diverged | None = None  # the first seed whose training diverged (then nothing is tested)

    def test(self, split: Dataset) -> tuple[list[float], list[list[float]]]:
        """Accuracy and per-class accuracy of every student on `split.test` (the real test split,
        or a validation split standing in for it during selection): each rank tests the students it holds."""
        scored = {
            seed: class_accuracy(m, split.test.images, split.test.labels, split.mean, split.std, split.num_classes)
            for seed, m in self.models.items()
        }
        if self.layout["layout"] == "assignment":
            scored = dist.merge(scored)
        return [scored[s][0] for s in sorted(scored)], [scored[s][1] for s in sorted(scored)]


def _layout(students: int, stored: bool) -> dict:
    """How `students` independent students divide over torchrun's ranks. Assignment (each rank trains
    whole students, no communication while training) when every rank gets one; DDP (every student
    trained by all ranks) when there are fewer students than ranks, or when the training set is read
    from a dataset store, which each rank would otherwise read whole for every student."""
    ranks = dist.world()
    if ranks == 1:
        return {"layout": "one process", "ranks": 1, "students": students}
    if stored or students < ranks:
        why = "the training set is read from a dataset store" if stored else "fewer students than ranks"
        return {"layout": "ddp", "ranks": ranks, "students": students, "why": why}
    return {"layout": "assignment", "ranks": ranks, "students": students}


def train_plans(plans: list[Plan], dataset: Dataset, runtime: Runtime) -> list[Students]:
    """Every plan's students, with one process's results. Under torchrun the students (plan-major,
    then seed) are each trained by all ranks, or given whole to the ranks, as `_layout` chooses:
    by rank 0's estimate of what each has left (`expected_seconds`), longest first, each to the
    rank with the least so far (`assign`), so a resumed student or a cheap one does not leave a
    rank idle for hours. A student whose training diverges is recorded in its plan's `diverged`,
    not raised, so every rank learns of it and an lr search goes on."""
    units = [(p, seed) for p, plan in enumerate(plans) for seed in range(plan.seeds)]
    layout = _layout(len(units), any(stream.stored(plan.data.images) for plan in plans))
    spread = layout["layout"] == "assignment"
    keys = student_keys(plans, runtime)
    # rank 0 alone estimates: its failure stops every rank
    owners = dist.first(lambda: assign(expected_seconds(plans, keys, dataset, runtime, layout), layout["ranks"]))
    models, done = {}, {}
    here = [u for u in range(len(units)) if owners[u] == dist.rank()] if spread else range(len(units))
    for u in here:
        with dist.alone() if spread else contextlib.nullcontext():
            p, seed = units[u]
            directory = None if keys[p] is None else _checkpoints / f"{keys[p]}-seed{seed}"
            model, done[u] = _train_one(plans[p], directory, seed, dataset, runtime)
        if model is not None:
            models[u] = model
    if spread:
        done = dist.merge(done)
        if track.current() is not None:  # rank 0's tracker: the other ranks' students' curves reach it now
            for u in (u for u in range(len(units)) if u not in here):
                _, log, curve, _ = done[u]
                tested = {epochs: acc for epochs, _, acc in curve}
                for epoch in range(1, len(log.epoch_loss) + 1 if log is not None else 1):
                    _track_epoch(plans[units[u][0]], units[u][1], epoch, log, tested.get(epoch))
    out, first = [], 0
    for plan in plans:
        seeds = range(first, first + plan.seeds)
        results = [done[u] for u in seeds]  # (seconds, log, curve, diverged) per seed
        ranks = {"seed_ranks": [owners[u] for u in seeds]} if spread else {}
        out.append(
            Students(
                {u - first: models[u] for u in seeds if u in models},
                [r[0] for r in results],
                results[-1][1],
                [sum(r[1].samples.values()) if r[1] is not None else 0 for r in results],
                {**layout, **ranks},
                [r[2] for r in results] if plan.curve_every else None,
                next((r[3] for r in results if r[3] is not None), None),
            )
        )
        first += plan.seeds
    return out


# an evaluation is timed before it starts when timing costs at most 1/PROBE_SHARE of its student epochs
PROBE_EPOCHS = 3
PROBE_SHARE = 20


def expected_seconds(plans: list[Plan], keys: list[str | None], dataset: Dataset, runtime: Runtime, layout: dict) -> list[float]:
    """Per student (plan-major, then seed): the seconds it has left, and said before they start.
    One student of each kind (data, loss terms, model, batch) trains PROBE_EPOCHS epochs, and its
    fastest epoch after the first (which pays for warm-up and compilation) is scaled to the epochs
    its students have left after their checkpoints; the wall time said is the busiest rank's under
    `layout`. Timed only where the answer is used (progress shown, or students to share out over
    ranks), the training set is in memory and timing costs at most 1/PROBE_SHARE of the training
    left; otherwise the epochs left stand in for the seconds."""
    epochs, left = [plan.recipe.epochs for plan in plans for _ in range(plan.seeds)], epochs_left(plans, keys)
    if (progress.quiet() and layout["layout"] != "assignment") or any(stream.stored(plan.data.images) for plan in plans):
        return [float(n) for n in left]
    kinds: dict[tuple, list[int]] = {}
    for p, plan in enumerate(plans):
        if any(left[u] for u in _units_of(plans, [p])):
            kinds.setdefault((id(plan.data), id(plan.terms), plan.model_name, plan.recipe.batch_size), []).append(p)
    if sum(left) < PROBE_SHARE * PROBE_EPOCHS * len(kinds) or not kinds:
        return [float(n) for n in left]
    per_epoch = [0.0] * len(left)
    for group in kinds.values():
        plan, ends = plans[group[0]], []
        try:
            with dist.alone():
                train(
                    build_for(dataset, plan.model_name, 0),
                    plan.data,
                    plan.terms,
                    plan.recipe.model_copy(update={"epochs": PROBE_EPOCHS}),
                    seed=0,
                    runtime=runtime,
                    description=f"timing {plan.description} · {plan.model_name}",
                    after_epoch=lambda *_: ends.append(time.perf_counter()),
                )
        except Diverged:  # the students will say so
            return [float(n) for n in left]
        for u in _units_of(plans, group):
            per_epoch[u] = min(b - a for a, b in zip(ends, ends[1:]))
    seconds = [s * n for s, n in zip(per_epoch, left)]
    shape = f"× {epochs[0]} epochs" if len(set(epochs)) == 1 else f"({sum(epochs):,} epochs in all)"
    resumed = f", {sum(left):,} epochs of them left after their checkpoints" if sum(left) < sum(epochs) else ""
    ranks = f", on {layout['ranks']} ranks" if layout["ranks"] > 1 else ""
    wall = busiest(seconds, layout)
    log(f"expected ≈ {progress.approx(wall)} for {len(epochs)} student{'s' * (len(epochs) > 1)} {shape}{resumed}{ranks}")
    return seconds


def _units_of(plans: list[Plan], group: list[int]) -> list[int]:
    """The unit indices (plan-major, then seed, as `train_plans` numbers them) of the plans in `group`."""
    firsts = np.cumsum([0] + [plan.seeds for plan in plans]).tolist()
    return [firsts[p] + seed for p in group for seed in range(plans[p].seeds)]


def epochs_left(plans: list[Plan], keys: list[str | None]) -> list[int]:
    """Per student (plan-major, then seed): its epochs still to train, after the newest checkpoint a
    killed evaluation left in `checkpointing`'s folder (`keys`: the plans' `student_keys`)."""
    left = []
    for plan, key in zip(plans, keys):
        for seed in range(plan.seeds):
            done = 0 if key is None else resumes_at(_checkpoints / f"{key}-seed{seed}")
            left.append(max(0, plan.recipe.epochs - done))
    return left


def assign(seconds: list[float], ranks: int) -> list[int]:
    """The rank of each student taking `seconds`: longest first, each to the rank with the least
    work so far (LPT, within 4/3 of the best split); equal times go round-robin."""
    load, owners = [0.0] * ranks, [0] * len(seconds)
    for u in sorted(range(len(seconds)), key=lambda u: -seconds[u]):  # stable: equal times keep their order
        owners[u] = min(range(ranks), key=load.__getitem__)  # the first of the least loaded
        load[owners[u]] += seconds[u]
    return owners


def busiest(seconds: list[float], layout: dict) -> float:
    """Wall seconds of students taking `seconds` each under `layout`: the busiest rank's share
    when students are assigned to ranks (`assign`), an even split when all ranks train each one (DDP)."""
    if layout["layout"] == "assignment":
        owners = assign(seconds, layout["ranks"])
        return max(sum(s for s, o in zip(seconds, owners) if o == r) for r in range(layout["ranks"]))
    return sum(seconds) / layout["ranks"]


# students trained inside `checkpointing(folder)` save their state this many times over their epochs
STUDENT_SAVES = 10
_checkpoints: Path | None = None


@contextlib.contextmanager
def checkpointing(folder: Path | None):
    """Students trained inside the block checkpoint into `folder`, one sub-folder per student named
    by a digest of everything that decides its weights (training data, loss terms, recipe, model,
    seed, speed settings), keeping only their newest state: a re-run of the same evaluation after a
    kill reloads the finished students and resumes the interrupted one, with the same results.
    Students that record a test-accuracy curve, replay a stored relabel or read a dataset store
    are not checkpointed (they retrain). When the block ends without an error the folder is removed:
    the checkpoints served only a resume."""
    global _checkpoints
    outer, _checkpoints = _checkpoints, None if folder is None else Path(folder)
    try:
        yield
        dist.barrier()  # every rank is done with its students before rank 0 removes them
        if folder is not None and dist.main():
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        _checkpoints = outer


def _raw_bytes(t: torch.Tensor) -> bytes:
    """A tensor's memory as bytes, for any dtype (numpy has no bfloat16): the bytes numpy gives for the others."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def student_keys(plans: list[Plan], runtime: Runtime) -> list[str | None]:
    """The seed-free part of each plan's student folder names (None: its students are not
    checkpointed), for a whole `train_plans` call: each training set is hashed once, as the
    plans of an evaluation share it."""
    digests: dict[int, object] = {}  # sha256 of the tensors, by id of the TrainData (which `plans` keeps alive)
    keys = []
    for plan in plans:
        data = plan.data
        if _checkpoints is None or plan.curve_every or data.replay is not None or stream.stored(data.images):
            keys.append(None)
            continue
        if id(data) not in digests:
            tensors = hashlib.sha256()
            for t in (data.images, data.hard, data.soft, data.dense):
                tensors.update(b"-" if t is None else _raw_bytes(t))
            digests[id(data)] = tensors
        keys.append(_student_key(plan, digests[id(data)].copy(), runtime))
    return keys


def _student_key(plan: Plan, digest, runtime: Runtime) -> str:
    """A plan's key: `digest` (sha256 fed its training tensors) fed everything else that decides its weights."""
    data = plan.data
    settings = [
        plan.model_name,
        plan.recipe.model_dump(mode="json"),
        [repr(t) for t in plan.terms.items()],
        data.mean,
        data.std,
        data.geometry,
        runtime.speed.model_dump(exclude={"check_every"}),  # when the loss is checked decides nothing
        runtime.device.type,
    ]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"{plan.model_name}-{digest.hexdigest()[:16]}"


def _train_one(plan: Plan, directory: Path | None, seed: int, dataset: Dataset, runtime: Runtime) -> tuple[nn.Module | None, tuple]:
    """One student: (model or None if it diverged, (seconds, log, curve, Diverged or None)). Time spent
    recording the curve's test accuracy is not counted in the seconds; a student resumed from its
    checkpoint (`checkpointing`) counts only the time since."""
    t0, tested, curve = time.perf_counter(), 0.0, []
    model = build_for(dataset, plan.model_name, seed)

    def record(epochs: int, model: nn.Module, log: TrainLog) -> None:
        nonlocal tested
        acc = None
        if plan.curve_every and (epochs % plan.curve_every == 0 or epochs == plan.recipe.epochs):
            t = time.perf_counter()
            acc, _ = class_accuracy(model, dataset.test.images, dataset.test.labels, dataset.mean, dataset.std, dataset.num_classes)
            curve.append((epochs, sum(log.samples.values()), acc))
            tested += time.perf_counter() - t
        _track_epoch(plan, seed, epochs, log, acc)

    try:
        log = train(
            model,
            plan.data,
            plan.terms,
            plan.recipe,
            seed=seed,
            runtime=runtime,
            description=f"{plan.description} · {plan.model_name} · seed {seed}",
            after_epoch=record if plan.curve_every or track.current() else None,
            checkpoint_dir=directory,
            save_every=max(1, plan.recipe.epochs // STUDENT_SAVES),
            rolling=True,
        )
    except Diverged as e:
        return None, (time.perf_counter() - t0 - tested, None, curve, e)
    return model, (time.perf_counter() - t0 - tested, log, curve, None)


def _track_epoch(plan: Plan, seed: int, epochs: int, log: TrainLog, test_acc: float | None) -> None:
    """A student's epoch to the current tracker (if any): its mean loss, the lr it trained with
    and, where a curve is recorded, its test accuracy."""
    tracker = track.current()
    if tracker is None:
        return
    values = {"loss": log.epoch_loss[epochs - 1], "lr": plan.recipe.lr_at(epochs - 1)}
    tracker.log(
        epochs, values if test_acc is None else {**values, "test_acc": test_acc}, f"{plan.description}/{plan.model_name}/seed{seed}"
    )


def train_students(
    data: TrainData,
    terms,
    recipe: Recipe,
    dataset: Dataset,
    model_name: str,
    seeds: int,
    runtime: Runtime,
    method: str,
    curve_every: int | None = None,
) -> Students:
    """Train `seeds` fresh students (seeds 0 .. seeds-1) on `data` (see `train_plans`); `dataset`
    gives their input shape and classes. A diverged student raises `Diverged`."""
    students = train_plans([Plan(data, terms, recipe, model_name, seeds, method, curve_every)], dataset, runtime)[0]
    if students.diverged is not None:
        raise students.diverged
    return students


def validation_split(dataset: Dataset, per_class: int, images: torch.Tensor) -> Dataset:
    """`data.holdout`'s validation split minus any image the artifact stores (random or herding
    sets are training images): students are never scored on their own training images."""
    val = holdout(dataset, per_class)
    stored = {x.numpy().tobytes() for x in images} if images.dtype == val.test.images.dtype else set()  # float sets: none
    keep = torch.tensor([x.numpy().tobytes() not in stored for x in val.test.images])
    return replace(val, test=val.test.subset(keep.nonzero().flatten()))


def select_lr(candidates: tuple[float, ...], students: list[Students], val: Dataset) -> tuple[int, dict]:
    """The index of the candidate lr whose students score best on the validation split (ties → the
    first candidate; a candidate whose training diverged scores None) and the record of the choice.
    The chosen students are exactly the final students (same data, recipe and seeds), so they are
    tested on the real test split afterwards instead of trained again; the real test split is never read here."""
    scores = [None if s.diverged is not None else float(np.mean(s.test(val)[0])) for s in students]
    scored = [i for i, score in enumerate(scores) if score is not None]
    if not scored:
        raise RunError(f"--select-lr: training diverged at every candidate ({', '.join(f'{c:g}' for c in candidates)}): add smaller ones")
    best = max(scored, key=scores.__getitem__)  # the first of equal scores
    return best, {"chosen": candidates[best], "on": val.name, "val_acc_by_lr": {f"{c:g}": a for c, a in zip(candidates, scores)}}


# The robustness accuracies that depend only on the data, the IPC and the label config, not on the
# artifact's images: a caller scoring several image methods with one label config measures them once.
REFERENCE_ACCS = ("real_hard", "random_any", "random_any_no_aug")


def robustness(
    art: Artifact,
    random_art: Artifact,
    dataset: Dataset,
    cfg: EvalConfig,
    runtime: Runtime,
    real_epochs: int,
    rows: list[dict] = (),
    w: float = 0.5,
    gamma: float = 0.5,
    reference: dict[str, list[float]] | None = None,
) -> dict:
    """DD-Ranking's HLR, IOR, LRS and ARS (eval/robust.py) for the artifact's own label method on
    the first model: `random_art` is a random real subset at the same IPC labelled the same way.
    Accuracies already in `rows` (same method and model) are reused, not retrained, and so are the
    REFERENCE_ACCS in `reference` (the `accs` of an earlier call with the same data, IPC, label
    config, eval config and `real_epochs`)."""
    from ladd.eval import robust

    method, model = default_methods(art)[-1], cfg.models[0]
    reference = {k: v for k, v in (reference or {}).items() if k in REFERENCE_ACCS}

    def accs(a: Artifact, m: str, **update) -> list[float]:
        done = next((r for r in rows if (r["method"], r["model"]) == (m, model)), None) if a is art and not update else None
        return (
            done["accs"]
            if done
            else evaluate(a, dataset, cfg.model_copy(update={"methods": (m,), "models": (model,), **update}), runtime)[0]["accs"]
        )

    def real_hard() -> list[float]:
        """Students on the whole training split with hard labels, at the protocol's lr: trained and
        tested directly (an `evaluate` would also zip the training split for its byte count)."""
        protocol = protocol_for(cfg, "baseline")
        recipe = protocol.recipe(
            model,
            strategy_for(dataset.name),
            epochs=real_epochs,
            lr=protocol.lr_for(model),
            batch_size=cfg.batch_size,
            augment=cfg.augment,
            images=len(dataset.train),
        )
        real = TrainData(dataset.train.images, dataset.train.labels, dataset.mean, dataset.std)
        return train_students(real, method_terms("baseline"), recipe, dataset, model, cfg.seeds, runtime, "full training split").test(
            dataset
        )[0]

    measured = {
        "real_hard": real_hard,
        "syn_hard": lambda: accs(art, "baseline"),
        "syn_any": lambda: accs(art, method),
        "random_any": lambda: accs(random_art, method),
        "syn_any_no_aug": lambda: accs(art, method, augment=False),
        "random_any_no_aug": lambda: accs(random_art, method, augment=False),
    }
    measured = {k: reference[k] if k in reference else run() for k, run in measured.items()}
    return {
        "method": method,
        "model": model,
        "real_epochs": real_epochs,
        "reused": sorted(reference),
        "random_images": random_art.manifest.get("images", {}).get("seed"),
        **robust.scores(measured, w, gamma),
    }


EQUAL_COST = ("bytes", "epochs", "curve")


def plus_one_config(cfg: EvalConfig) -> EvalConfig:
    """How baseline++ evaluates the IPC + 1 set (`evaluate_all` it beside the main evaluation, so
    under torchrun its students share the ranks with the main ones): hard labels, every model."""
    return cfg.model_copy(update={"methods": ("baseline",), "curve_every": None})


def equal_cost(
    art: Artifact,
    plus_rows: list[dict] | None,
    dataset: Dataset,
    cfg: EvalConfig,
    runtime: Runtime,
    rows: list[dict],
    kinds: tuple[str, ...] = ("bytes", "epochs"),
) -> list[dict]:
    """LADD's equal-cost comparisons (Fig. 3), for every model:
    bytes   `baseline++`: hard labels on the image method's IPC + 1 set (about the bytes the labels add),
            from `plus_rows`, its rows under `plus_one_config`;
    epochs  `baseline=flops`: hard labels trained for as many epochs as match the label method's
            label + student FLOPs (the images' FLOPs are the same for both);
    curve   the paper's reading: both trained with the same batch size and epochs, the label
            method's accuracy read off its curve (`curve_every`) where it has spent the baseline's
            whole deployment FLOPs (linear between recorded epochs, per seed): `<method> @ baseline FLOPs`."""
    method = default_methods(art)[-1]
    extra = []
    for model in cfg.models:
        one = cfg.model_copy(update={"methods": ("baseline",), "models": (model,), "curve_every": None})
        if "bytes" in kinds:
            row = next(r for r in plus_rows if r["model"] == model)
            extra.append({**row, "method": "baseline++", "budget": f"hard labels at IPC {row['ipc']} (IPC + 1)"})
        base = next((r for r in rows if (r["method"], r["model"]) == ("baseline", model)), None)
        labelled = next((r for r in rows if (r["method"], r["model"]) == (method, model)), None)
        if base is None or labelled is None or method == "baseline":
            continue
        if "epochs" in kinds:
            cost = labelled["flops_labels"] + labelled["flops_deploy"]  # both share the images' FLOPs
            epochs = max(1, round(base["epochs"] * cost / base["flops_deploy"]))
            row = evaluate(art, dataset, one.model_copy(update={"epochs": epochs}), runtime)[0]
            extra.append(
                {**row, "method": "baseline=flops", "budget": f"{epochs} epochs: the label + student FLOPs of {method} ({cost:.3g})"}
            )
        if "curve" in kinds:
            try:
                extra.append(at_flops(labelled, base["flops_deploy"], "baseline"))
            except ConfigError as e:  # its students are trained by now: their rows are kept, the reading left out
                logger.warning(f"{e}; the other rows are written")
    return extra


def at_flops(row: dict, budget: int, of: str) -> dict:
    """`row`'s students read off their recorded curves where they had spent `budget` deployment FLOPs."""
    curve = row.get("curve")
    if not curve or curve[0]["flops_deploy"] > budget:
        first = "no curve" if not curve else f"its first recorded point is at {curve[0]['flops_deploy']:.3g} FLOPs"
        raise ConfigError(
            f"{row['method']} cannot be read at {of}'s {budget:.3g} deployment FLOPs: {first}; record it more often (--curve-every)"
        )
    if budget > curve[-1]["flops_deploy"]:  # np.interp would hold the last point: its students never spent that much
        raise ConfigError(
            f"{row['method']} cannot be read at {of}'s {budget:.3g} deployment FLOPs: its students spent "
            f"{curve[-1]['flops_deploy']:.3g} in all; train them for more epochs"
        )
    flops = [p["flops_deploy"] for p in curve]
    accs = [float(np.interp(budget, flops, [p["accs"][seed] for p in curve])) for seed in range(len(curve[0]["accs"]))]
    epoch = float(np.interp(budget, flops, [p["epoch"] for p in curve]))
    done = {**{k: v for k, v in row.items() if k != "curve"}, "class_acc_mean": [float("nan")] * len(row["class_acc_mean"])}  # not recorded
    return {
        **done,
        "method": f"{row['method']} @ {of} FLOPs",
        "equal_flops_of": of,
        "accs": accs,
        "acc_mean": float(np.mean(accs)),
        "acc_std": float(np.std(accs)),
        "flops_deploy": budget,
        "flops": (row["flops_distill"] or 0) + row["flops_labels"] + budget,
        "budget": (
            f"{row['method']} after {epoch:.1f} of its {row['epochs']} epochs, where it has spent {of}'s {budget:.3g} deployment FLOPs"
        ),
    }
