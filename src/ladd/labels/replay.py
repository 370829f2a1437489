"""Replaying a stored relabel, with label pruning (LPLD, Xiao & He).

A *unit* is what pruning keeps or drops: a stored epoch (`pool="epoch"`) or one relabel batch of
an epoch (`pool="batch"`, LPLD's improved label pool: batches from different epochs form new
epochs). `prune_units` keeps ⌊units/ρ⌋ of them: at random (LPLD's method) or ranked by a
per-label metric (the baselines it compares against). A `Replay` then feeds the one trainer: each
student epoch takes one epoch's worth of units from the pool (epoch pool: 1 unit, batch pool:
⌈N/batch⌉ units) and renders each sample from its stored parameters. As in SRe²L/LPLD, each
stored relabel batch is one student step (`batches="stored"`: the batch the CutMix draw was made
for, at the relabel batch size); `"shuffled"` mixes the kept units' samples into batches of any
size instead (a sample's input does not depend on its batch, so this is well defined too).

Units are drawn as a stream of reshuffled passes over the pool (every kept unit once per pass), so
ρ = 1 replays every stored epoch once when the student trains as many epochs as were stored; LPLD
draws with replacement (he-y/soft-label-pruning-for-dataset-distillation@63eee18
train_FKD_label_pruning_batch.py, `batch_to_epoch`). Which units are kept depends on the relabel's
seed only, so every student seed trains on the same pruned labels (the set one would ship).
"""

from __future__ import annotations

import copy

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from ladd.artifact.relabel import RelabelStore, by_epoch
from ladd.augment.fkd import render
from ladd.core.errors import ConfigError
from ladd.core.runtime import generator

Pool = Literal["epoch", "batch"]
POOLS = ("epoch", "batch")
# Label-level metrics LPLD compares random pruning against; each score is "higher = easier".
METRICS = ("random", "correct", "confidence", "diff", "diff_signed", "cut_ratio")
KEEPS = ("easy", "hard", "uniform")
BATCHES = ("stored", "shuffled")


class Pruning(BaseModel):
    """Which stored labels a replay keeps: 1/ρ of the units of `pool`, chosen by `metric` (random =
    LPLD; the others rank units and keep the `keep` end). Refused on construction, with the CLI
    option's name, so a bad value fails before any training."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rho: float = 1.0
    pool: str = "epoch"
    metric: str = "random"
    keep: str = "easy"
    batches: str = "stored"  # student steps: the stored relabel batches (LPLD), or the kept samples reshuffled

    @model_validator(mode="after")
    def _check(self) -> "Pruning":
        if self.rho < 1:
            raise ConfigError(f"--prune {self.rho:g} must be >= 1: it keeps 1/ρ of the stored labels (1 = keep all)")
        for value, valid, option in (
            (self.pool, POOLS, "--pool"),
            (self.metric, METRICS, "--prune-metric"),
            (self.keep, KEEPS, "--prune-keep"),
            (self.batches, BATCHES, "--replay-batches"),
        ):
            if value not in valid:
                raise ConfigError(f"{option} {value!r} is not one of {', '.join(valid)}")
        return self


def units(store: RelabelStore, pool: str) -> list[torch.Tensor]:
    """Flat positions (e·N + k) of every unit, in storage order."""
    n, bs = store.samples, store.info["batch_size"]
    step = n if pool == "epoch" else bs
    return [torch.arange(e * n + s, e * n + min(s + step, n)) for e in range(store.epochs) for s in range(0, n, step)]


def units_per_epoch(store: RelabelStore, pool: str) -> int:
    return 1 if pool == "epoch" else math.ceil(store.samples / store.info["batch_size"])


def keep_count(total: int, prune: float, pool: str) -> int:
    """⌊total/ρ⌋ units (ρ >= 1); a pool too small for ρ is refused."""
    kept = math.floor(total / prune + 1e-9)
    if kept < 1:
        raise ConfigError(
            f"--prune {prune:g} keeps 0 of the {total} stored {pool} units: relabel more epochs, lower --prune, or use --pool batch"
        )
    return kept


def sample_scores(store: RelabelStore, hard: torch.Tensor, metric: str) -> torch.Tensor:
    """E×N per-label scores, higher = easier, on the stored targets (ours; LPLD's code ranks with
    training-dynamics metrics instead):
    correct      the teacher's top class is the sample's own class (1/0)
    confidence   the teacher's top probability
    diff         −|s − λ|, s = p(own) / (p(own) + p(partner's class)): how far the label departs
                 from CutMix's area share λ (s = λ when both images share a class)
    diff_signed  s − λ: the teacher gives the own class more than its area share
    cut_ratio    −(1 − λ): the less pasted from the partner, the easier"""
    if metric not in METRICS or metric == "random":
        raise ConfigError(f"prune metric {metric!r} is not one of {', '.join(METRICS)}")
    scores = []
    for e in range(store.epochs):
        rows = torch.arange(store.samples)
        p = store.targets(e, rows)
        t = store.files[e]
        own, partner, lam = hard[t["order"]], hard[t["mix_index"]], store.epoch(e).mix(rows)[0].double()
        p_own = p.gather(1, own[:, None])[:, 0].double()
        p_partner = p.gather(1, partner[:, None])[:, 0].double()
        share = torch.where(own == partner, lam, p_own / (p_own + p_partner).clamp_min(1e-12))
        scores.append(
            {
                "correct": (p.argmax(1) == own).double(),
                "confidence": p.max(1).values.double(),
                "diff": -(share - lam).abs(),
                "diff_signed": share - lam,
                "cut_ratio": -(1 - lam),
            }[metric]
        )
    return torch.stack(scores)


def prune_units(store: RelabelStore, hard: torch.Tensor, pruning: Pruning = Pruning()) -> list[torch.Tensor]:
    """The kept units: ⌊units/ρ⌋, at random (seeded by the relabel seed) or by mean metric score."""
    metric, keep = pruning.metric, pruning.keep
    every = units(store, pruning.pool)
    count = keep_count(len(every), pruning.rho, pruning.pool)
    if count == len(every):
        return every
    if metric == "random":
        chosen = torch.randperm(len(every), generator=generator(store.info["config"]["seed"]))[:count]
    else:
        flat = sample_scores(store, hard, metric).flatten()
        ranked = torch.tensor([flat[u].mean().item() for u in every]).argsort(descending=True, stable=True)
        if keep == "easy":
            chosen = ranked[:count]
        elif keep == "hard":
            chosen = ranked[-count:]
        else:
            chosen = ranked[torch.linspace(0, len(every) - 1, count).round().long()]
    return [every[i] for i in chosen.sort().values.tolist()]


class Replay:
    """What the trainer's `fkd` term reads: per student epoch the stored positions to visit, and
    per position the rendered input and its probability target. Needs no teacher."""

    def __init__(
        self, store: RelabelStore, images: torch.Tensor, mean, std, kept: list[torch.Tensor], per_epoch: int, batches: str = "stored"
    ):
        self.store, self.images, self.mean, self.std = store, images, mean, std
        self.kept, self.per_epoch, self.stored_batches = kept, per_epoch, batches == "stored"
        self.temperature = float(store.info["temperature"])
        self._stream: list[int] = []
        self._stream_gen: torch.Generator | None = None

    def for_seed(self, seed: int) -> "Replay":
        """This replay with its own unit stream for one student: the pool is shared, the order of
        its units depends on the student's seed (the trainer calls this once per run)."""
        mine = copy.copy(self)
        mine._stream, mine._stream_gen = [], generator(seed)
        return mine

    def batches(self, epoch: int, gen: torch.Generator, batch_size: int) -> list[torch.Tensor]:
        """The steps of student epoch `epoch`, as stored positions: each kept unit's relabel
        batches in stored order, or all their samples shuffled with the trainer's generator and
        split into `batch_size`. The units come from a stream that depends only on the seed, so a
        resumed run draws the same ones."""
        if self._stream_gen is None:
            raise RuntimeError("Replay.batches needs a seeded stream: call for_seed(seed) first")
        end = (epoch + 1) * self.per_epoch
        while len(self._stream) < end:
            self._stream += torch.randperm(len(self.kept), generator=self._stream_gen).tolist()
        units = [self.kept[u] for u in self._stream[epoch * self.per_epoch : end]]
        if self.stored_batches:  # a unit is whole relabel batches of one epoch, rows in stored order
            return [b for u in units for b in u.split(self.store.batch_size)]
        chosen = torch.cat(units)
        return list(chosen[torch.randperm(len(chosen), generator=gen)].split(batch_size))

    def image_index(self, positions: torch.Tensor) -> torch.Tensor:
        return self.store.gather("order", positions.cpu()).to(positions.device)

    def inputs(self, positions: torch.Tensor) -> torch.Tensor:
        return by_epoch(positions, self.store.samples, lambda e, rows: render(self.images, self.mean, self.std, self.store.epoch(e), rows))

    def targets(self, positions: torch.Tensor) -> torch.Tensor:
        return by_epoch(positions, self.store.samples, self.store.targets).to(self.images.device)
