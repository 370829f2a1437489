"""Recover (SRe²L/LPLD stage 2): synthesize images from a frozen BN teacher.

Both methods optimize randomly initialized images (normalized space) with Adam(β 0.5, 0.9),
cosine lr and pixel clipping, under a fresh random crop / flip / roll jitter each step, for

    CE(teacher(x), y) + r_bn · Σ_l w_l (‖μ_l(x) − μ̂_l‖₂ + ‖σ²_l(x) − σ̂²_l‖₂),

where μ_l(x), σ²_l(x) are the batch mean and biased variance entering BN layer l and w_l is
`first_bn_multiplier` for the first layer, 1 otherwise. The teacher runs in eval mode, so its
logits — the CE term — always use its global running statistics (LPLD Eq. 6).

- `sre2l`: batches mix classes (one image of each of up to `classes_per_batch` classes); targets
  μ̂, σ̂² are the teacher's global running statistics.
- `lpld`: a batch holds the IPC images of one class; targets are that class's statistics from
  `ladd squeeze` (computed on first use when the teacher has none yet).

A batch is a *unit*: units are independent, each has its own seed (derived from the run seed
and the unit index) and its own checkpoint. Under torchrun units go round-robin to the ranks
(`dist.mine`), each rank checkpointing the units it runs, and are gathered on every rank; a run
resumes per unit, whatever the number of ranks — with the same images as one uninterrupted
process (at the same thread count). Hyperparameters: recipes `sre2l-*.toml` / `lpld-*.toml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ladd.augment.fkd import crop_boxes
from ladd.core import dist
from ladd.core.errors import ConfigError
from ladd.core.progress import log
from ladd.core.runtime import generator
from ladd.core.limits import MAX_COUNT, MAX_PIXELS, MAX_PIXEL_LR, MAX_STEPS
from ladd.core.types import ImageSet, to_pixels
from ladd.images import IMAGE_METHODS, ImageRequest
from ladd.images.optimize import Optimized, optimize_images, run_units, unit_seed
from ladd.images.squeeze import (
    STATS,
    SqueezeConfig,
    bn_layers,
    channel_stats,
    load_class_statistics,
    load_teacher,
    require_bn,
    teacher_dir,
    write_class_statistics,
)

METHODS = ("sre2l", "lpld")


class RecoverParams(BaseModel):
    """Defaults: SRe²L's ImageNet recover (VILA-Lab/SRe2L@8d00cba SRe2L/recover/data_synthesis.py, recover.sh)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    teacher_model: str = "resnet18-bn"  # trained through the expert cache unless a teacher directory is given
    teacher_epochs: int = Field(10, ge=1, le=MAX_COUNT)
    iterations: int = Field(4000, ge=1, le=MAX_STEPS)  # recover.sh: 4K
    lr: float = Field(0.25, gt=0, le=MAX_PIXEL_LR)  # Adam lr, cosine-annealed
    betas: tuple[float, float] = (0.5, 0.9)
    r_bn: float = Field(0.01, ge=0, le=1e6)  # weight of the BN term
    first_bn_multiplier: float = Field(10.0, ge=0, le=1e6)  # the first BN layer's distance counts ×10
    jitter: int = Field(32, ge=0, le=MAX_PIXELS)  # random roll by up to ±jitter pixels per axis
    flip: bool = True  # random horizontal flip of the batch
    crop_scale: float = Field(0.08, gt=0, le=1)  # RandomResizedCrop area scale (crop_scale, 1); 1 = no crop
    classes_per_batch: int = Field(100, ge=1, le=MAX_COUNT)  # sre2l: classes mixed in one batch (batch 100 = 100 classes)
    checkpoint_every: int = Field(100, ge=1, le=MAX_STEPS)


def bn_objective(
    stats: list[tuple[torch.Tensor, torch.Tensor]], targets: list[tuple[torch.Tensor, torch.Tensor]], first_multiplier: float
) -> torch.Tensor:
    """Σ_l w_l (‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂), w_0 = first_multiplier, else 1."""
    total = stats[0][0].new_zeros(())
    for i, ((mu, var), (t_mu, t_var)) in enumerate(zip(stats, targets)):
        total = total + (first_multiplier if i == 0 else 1.0) * (
            torch.linalg.vector_norm(mu - t_mu) + torch.linalg.vector_norm(var - t_var)
        )
    return total


def jitter(x: torch.Tensor, p: RecoverParams, gen: torch.Generator) -> torch.Tensor:
    """One random resized crop (shared by the batch, as the reference crops the batch tensor; its
    box by `crop_boxes`' "clamp" rule), flip and roll; draws come from `gen` in a fixed order, so a
    resume repeats them."""
    h, w = x.shape[-2:]
    u = torch.rand(1, 5, generator=gen).double()  # area, aspect, top, left, flip
    if p.crop_scale < 1:
        top, left, ch, cw = crop_boxes(u[:, :1], u[:, 1:2], u[:, 2:4], h, w, (p.crop_scale, 1.0), fit="clamp")[0].tolist()
        x = F.interpolate(x[..., top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False)
    if p.flip and float(u[0, 4]) < 0.5:
        x = x.flip(-1)
    if p.jitter:
        dy, dx = torch.randint(-p.jitter, p.jitter + 1, (2,), generator=gen).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return x


def plan_units(method: str, classes: int, ipc: int, classes_per_batch: int) -> list[torch.Tensor]:
    """Each unit's slots in the class-major output (slot = class·IPC + j)."""
    if method == "lpld":
        return [torch.arange(c * ipc, (c + 1) * ipc) for c in range(classes)]
    return [chunk * ipc + j for j in range(ipc) for chunk in torch.arange(classes).split(classes_per_batch)]


@dataclass(frozen=True)
class Spec:
    """Everything a unit's recovery depends on besides the teacher."""

    method: str
    teacher_model: str
    shape: tuple[int, int, int]
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: RecoverParams
    class_stats: dict[str, torch.Tensor] | None  # lpld's targets
    ipc: int
    seed: int
    checkpoint_dir: Path | None
    resume: bool
    device: str


class Recovery:
    """A frozen teacher with hooks reading the batch statistics entering each BN layer."""

    def __init__(self, spec: Spec, teacher: nn.Module):
        self.spec, self.p = spec, spec.params
        self.teacher = teacher
        self.layers = require_bn(teacher, spec.teacher_model)
        self.units = plan_units(spec.method, spec.classes, spec.ipc, self.p.classes_per_batch)
        self.batch_stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        for m in self.layers.values():
            m.register_forward_hook(lambda _m, inputs, _out: self.batch_stats.append(channel_stats(inputs[0])))
        dev = torch.device(spec.device)
        mean_t = torch.tensor(spec.mean, device=dev).view(1, -1, 1, 1)
        std_t = torch.tensor(spec.std, device=dev).view(1, -1, 1, 1)
        self.low, self.high = -mean_t / std_t, (1 - mean_t) / std_t

    def targets(self, labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.spec.method == "sre2l":
            return [(m.running_mean, m.running_var) for m in self.layers.values()]
        c = int(labels[0])  # an lpld unit is one class
        stats = self.spec.class_stats
        return [(stats[f"mean.{n}"][c].to(labels.device), stats[f"var.{n}"][c].to(labels.device)) for n in self.layers]

    def objective(
        self, x: torch.Tensor, labels: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """CE + r_bn · BN distance of one forward pass (no jitter); `targets` = `self.targets(labels)`,
        passed in by `run`, which computes them once per unit."""
        self.batch_stats.clear()
        ce = F.cross_entropy(self.teacher(x), labels)
        targets = self.targets(labels) if targets is None else targets
        return ce + self.p.r_bn * bn_objective(self.batch_stats, targets, self.p.first_bn_multiplier)

    def unit_dir(self, unit: int) -> Path | None:
        return None if self.spec.checkpoint_dir is None else self.spec.checkpoint_dir / f"unit_{unit:05d}"

    def run(self, unit: int) -> Optimized:
        """The unit's images (normalized float), its loss per iteration and FLOPs."""
        s, p = self.spec, self.p
        slots = self.units[unit]
        labels = (slots // s.ipc).to(s.device)
        x0 = torch.randn(len(slots), *s.shape, generator=generator(unit_seed(s.seed, unit, "init"))).to(s.device)
        directory = self.unit_dir(unit)
        what = f"class {int(labels[0])}" if s.method == "lpld" else f"batch {unit}"
        targets = self.targets(labels)  # fixed for the unit: an lpld unit is one class
        return optimize_images(
            x0,
            lambda it, syn, gen: self.objective(jitter(syn, p, gen), labels, targets),
            iterations=p.iterations,
            lr=p.lr,
            betas=p.betas,
            cosine=True,
            project=lambda x: x.clamp_(self.low, self.high),
            seed=unit_seed(s.seed, unit, "loop"),
            checkpoint_dir=directory,
            resume=s.resume,
            every=p.checkpoint_every,
            description=f"{s.method.upper()} {what}",
        )


def prepare(req: ImageRequest, method: str) -> tuple[Recovery, dict]:
    """Teacher (trained or reused), LPLD's class statistics (squeezed on first use), the unit plan."""
    p = RecoverParams(**req.params)
    ds = req.dataset
    if req.ipc < 1:
        raise ConfigError(f"--ipc {req.ipc} must be >= 1")
    directory = teacher_dir(ds, req.teacher, p.teacher_model, p.teacher_epochs, req.runtime)
    teacher, prov = load_teacher(directory, ds, req.runtime)
    stats = None
    if method == "lpld":
        with dist.locked(directory / STATS, "squeezing"):  # a second job waits for, then reads, the statistics
            if not dist.first((directory / STATS).exists):
                log(f"no class-wise BN statistics beside the teacher yet: squeezing {directory}")
                write_class_statistics(teacher, prov, ds, directory, SqueezeConfig(), req.runtime)
        stats = load_class_statistics(directory, ds, prov, list(bn_layers(teacher)))  # load_teacher required BN
    checkpoints = None if req.checkpoint_dir is None else Path(req.checkpoint_dir) / f"teacher-{prov['checkpoint_sha256'][:12]}"
    spec = Spec(
        method,
        prov["model"],
        ds.shape,
        ds.num_classes,
        ds.mean,
        ds.std,
        p,
        stats,
        req.ipc,
        req.seed,
        checkpoints,
        req.resume,
        str(req.runtime.device),
    )
    return Recovery(spec, teacher), prov


def recover_images(req: ImageRequest, method: str) -> ImageSet:
    """Every unit, each on one rank (as one process: it checkpoints its own units), gathered in pixels."""
    recovery, prov = prepare(req, method)
    ds = req.dataset
    done = run_units(len(recovery.units), recovery.run, lambda x: to_pixels(x, ds.mean, ds.std, keep_float=req.float_images))
    x = torch.empty(ds.num_classes * req.ipc, *ds.shape, dtype=done[0].images.dtype)
    for slots, unit in zip(recovery.units, done):
        x[slots] = unit.images
    labels = torch.arange(ds.num_classes).repeat_interleave(req.ipc)
    info = {
        "teacher": {k: prov[k] for k in ("directory", "model", "epoch", "checkpoint_sha256", "test_acc")},
        "units": len(done),
        "final_loss_mean": sum(u.losses[-1] for u in done) / len(done),
    }
    # the teacher is charged to the labels it makes (relabel), as LADD's labeler is
    return ImageSet(x, labels, info, flops=sum(u.flops for u in done))


@IMAGE_METHODS.register("sre2l")
def sre2l_images(req: ImageRequest) -> ImageSet:
    return recover_images(req, "sre2l")


@IMAGE_METHODS.register("lpld")
def lpld_images(req: ImageRequest) -> ImageSet:
    return recover_images(req, "lpld")
