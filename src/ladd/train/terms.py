"""Loss terms: what a training step minimizes, as small objects the one trainer sums.

LADD's deployment loss (Eq. 5) is `global-hard + local-dense`; the hard-label baseline is
`global-hard`; the paper's Table 6 ablations are the other combinations. A method is a name for
a tuple of terms, so methods differ in terms, never in training loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ladd.augment.subsample import views
from ladd.core.errors import ArtifactError, ConfigError
from ladd.core.registry import Registry


@dataclass(frozen=True)
class Batch:
    """One step's data on the device: normalized images and whatever labels the set carries."""

    x: torch.Tensor  # B×C×H×W float, normalized
    hard: torch.Tensor  # B int64
    soft: torch.Tensor | None  # B×C global soft labels
    dense: torch.Tensor | None  # B×N²×C LADD dense labels
    geometry: tuple[int, float] | None  # (N, R) of the sub-sampler
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    gen: torch.Generator
    replay: Any = None  # a stored relabel being replayed (`ladd.labels.replay.Replay`)
    stored: torch.Tensor | None = None  # its positions (epoch·N + row) this batch visits
    rows: tuple[int, int, int] | None = None  # under DDP: (first, end, size) of this rank's rows in the global batch

    def rand(self, *shape: int) -> torch.Tensor:
        """U[0, 1) draws, one row per image, on the CPU generator: under DDP this rank's rows of
        the draw one process makes for the whole batch, so every rank's stream stays the same."""
        if self.rows is None:
            return torch.rand(self.x.shape[0], *shape, generator=self.gen)
        first, end, size = self.rows
        return torch.rand(size, *shape, generator=self.gen)[first:end]


class Term(Protocol):
    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> tuple[torch.Tensor, int]:
        """Return (loss averaged over the batch's images, number of model inputs it forwarded).
        `model` is the network or the trainer's wrapper of it (compiled, autocast: fp32 logits
        either way); a term only calls it."""


SoftLoss = Literal["ce", "kl"]


def ce(logits: torch.Tensor, target: torch.Tensor, soft_loss: SoftLoss = "ce") -> torch.Tensor:
    """Per-row loss: cross-entropy with hard (int) targets; with probability targets soft-target
    cross-entropy (the reference student) or KL(target ‖ model). The two differ by the target's
    entropy, a constant, so they give the same gradients; KL reads 0 at a perfect fit."""
    if target.dtype == torch.int64 or soft_loss == "ce":
        return F.cross_entropy(logits, target, reduction="none")
    return F.kl_div(logits.log_softmax(-1), target, reduction="none").sum(-1)


def _need(t: torch.Tensor | None, what: str) -> torch.Tensor:
    if t is None:
        raise ArtifactError(f"this method needs {what}, which the artifact lacks: run `ladd label` on it first")
    return t


@dataclass(frozen=True)
class GlobalTerm:
    """CE of the whole (augmented) image against its hard or global soft label."""

    target: Literal["hard", "soft"]
    soft_loss: SoftLoss = "ce"

    def __call__(self, model, batch):
        y = batch.hard if self.target == "hard" else _need(batch.soft, "global soft labels")
        return ce(model(batch.augment(batch.x, batch.gen)), y, self.soft_loss).mean(), batch.x.shape[0]


@dataclass(frozen=True)
class LocalTerm:
    """CE over the N² static sub-images against the hard label or the dense labels y^d_j.

    `reduction="sum"` is Eq. 5 literally (Σ_j); `"mean"` divides by N². The sum makes the local
    gradient N² times the global one: at the reference lr 0.01 on mnist5k IPC 10 it trained to
    44.5% against 94.2% with the mean (benchmarks/ladd_accuracy.py), so the mean is the default.
    With `crops_per_step` K < N², K crops per image are drawn without replacement each step and
    scaled by N²/K: an unbiased estimate of the full sum (or mean) at K/N² of the cost.
    """

    target: Literal["hard", "dense"]
    crops_per_step: int | None = None
    reduction: Literal["mean", "sum"] = "mean"
    soft_loss: SoftLoss = "ce"

    def __call__(self, model, batch):
        if batch.geometry is None:
            raise ArtifactError("local-view methods need the sub-sampling geometry (N, R): run `ladd label` first")
        n, r = batch.geometry
        b, total = batch.x.shape[0], n * n
        k = min(self.crops_per_step or total, total)
        if k == total:
            index = torch.arange(total, device=batch.x.device).expand(b, -1)
        else:
            index = batch.rand(total).argsort(dim=1)[:, :k].to(batch.x.device, non_blocking=True)
        v = views(batch.x, n, r, index).flatten(0, 1)  # (B·K)×C×H×W
        if self.target == "hard":
            y = batch.hard.repeat_interleave(k)
        else:
            dense = _need(batch.dense, "dense labels")
            y = dense.gather(1, index[..., None].expand(-1, -1, dense.shape[-1])).flatten(0, 1)
        scale = (total / k) / (total if self.reduction == "mean" else 1)
        loss = ce(model(batch.augment(v, batch.gen)), y, self.soft_loss).view(b, k).sum(1) * scale
        return loss.mean(), b * k


@dataclass(frozen=True)
class Weighted:
    """A term scaled by a constant: `--local-weight λ` trains on global + λ·local (Eq. 5 is λ = 1),
    so the balance between the whole image and its sub-images is a lever chosen on validation."""

    term: Term
    weight: float

    def __call__(self, model, batch):
        loss, inputs = self.term(model, batch)
        return self.weight * loss, inputs


class LearnedWeights(nn.Module):
    """`--local-weight learned`: the step loss Σ_t exp(−s_t)·L_t + s_t, one log-variance s_t per
    term optimized with the student (Kendall, Gal & Cipolla 2018, homoscedastic uncertainty
    weighting). s = 0 at the start is Eq. 5's plain sum; the +s_t penalty keeps a term's weight
    from going to 0, and at its optimum exp(−s_t) = 1/L_t, so the balance between the whole image
    and its sub-images follows their loss levels instead of a λ swept on validation."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = names
        self.log_vars = nn.Parameter(torch.zeros(len(names)))

    def forward(self, losses: list[torch.Tensor]) -> torch.Tensor:
        return (torch.exp(-self.log_vars) * torch.stack(losses) + self.log_vars).sum()

    def weights(self) -> dict[str, float]:
        """exp(−s_t) per term: the weight each term's loss carries now."""
        return dict(zip(self.names, torch.exp(-self.log_vars.detach()).tolist()))


@dataclass(frozen=True)
class ReplayTerm:
    """The SRe²L/FKD student loss on a stored relabel: KL(softmax(stored / T) ‖ softmax(h(x̃) / T))
    with batchmean reduction, x̃ the stored augmentation replayed (VILA-Lab/SRe2L@8d00cba
    validate/train_FKD.py; no T² factor, as its ImageNet script). No teacher is run."""

    def __call__(self, model, batch):
        if batch.replay is None:
            raise ArtifactError("the fkd method replays stored relabel labels, which the artifact lacks: run `ladd relabel ARTIFACT` first")
        x = batch.replay.inputs(batch.stored)
        log_p = (model(x) / batch.replay.temperature).log_softmax(-1)
        return F.kl_div(log_p, batch.replay.targets(batch.stored), reduction="batchmean"), x.shape[0]


# Each entry builds a term from (crops_per_step, local reduction, soft-label loss).
TERMS: Registry[Callable[[int | None, str, SoftLoss], Term]] = Registry("loss term")
TERMS.register("global-hard")(lambda k, red, sl: GlobalTerm("hard"))
TERMS.register("global-soft")(lambda k, red, sl: GlobalTerm("soft", sl))
TERMS.register("local-hard")(lambda k, red, sl: LocalTerm("hard", k, red))
TERMS.register("local-dense")(lambda k, red, sl: LocalTerm("dense", k, red, sl))
TERMS.register("replay")(lambda k, red, sl: ReplayTerm())

# Named methods (LADD paper Table 6 vocabulary); any '+'-joined list of terms works too.
METHODS: Registry[tuple[str, ...]] = Registry("method")
METHODS.register("baseline", aliases=("hard",))(("global-hard",))
METHODS.register("ladd")(("global-hard", "local-dense"))
METHODS.register("global-soft", aliases=("soft",))(("global-soft",))
METHODS.register("global-both")(("global-hard", "global-soft"))
METHODS.register("local-hard")(("local-hard",))
METHODS.register("local-dense")(("local-dense",))
METHODS.register("local-both")(("local-hard", "local-dense"))
METHODS.register("fkd", aliases=("sre2l", "relabel"))(("replay",))  # stored relabel replay (`ladd relabel`)


def method_terms(
    method: str, crops_per_step: int | None = None, local_reduction: str = "mean", soft_loss: SoftLoss = "ce", local_weight: float = 1.0
) -> dict[str, Term]:
    """Terms of a named method or of a '+'-joined list such as `global-soft+local-dense`; the
    local terms weighted by `local_weight` where it is not 1."""
    if local_reduction not in ("mean", "sum"):
        raise ConfigError(f"local reduction {local_reduction!r} is not mean or sum")
    if soft_loss not in ("ce", "kl"):
        raise ConfigError(f"soft-label loss {soft_loss!r} is not ce or kl")
    if "+" in method or (method not in METHODS and method in TERMS):
        names = tuple(method.split("+"))
    else:
        names = METHODS.get(method)
    terms = {TERMS.canonical(n): TERMS.get(n)(crops_per_step, local_reduction, soft_loss) for n in names}
    return {n: Weighted(t, local_weight) if n.startswith("local") and local_weight != 1 else t for n, t in terms.items()}
