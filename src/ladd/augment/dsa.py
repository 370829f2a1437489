"""Differentiable Siamese Augmentation (DSA), as in VICO-UoE/DatasetCondensation `DiffAugment`.

Why hand-written rather than kornia: DSA's distributions (additive brightness, channel-mean
saturation, integer-shift crop with zero fill, one op family per call) are part of the method's
definition, and distillation needs the *same* sampled parameters replayed on another batch.
Sampling is separated from applying: `sample` draws a `DSAParams`, `apply` replays it. Every op
is differentiable in the images, so gradients reach synthetic pixels.

Reference semantics kept: each call draws ONE op family uniformly from the strategy string
(`color` = brightness, then saturation, then contrast); parameters are per sample in training
and shared by the whole batch in siamese mode (`shared=True`, a batch-1 draw broadcast to any
batch size, so real and synthetic batches of different sizes get identical transforms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ladd.core.errors import ConfigError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
NO_FLIP_STRATEGY = "color_crop_cutout_scale_rotate"  # digits: a mirrored 2 is not a 2


@dataclass(frozen=True)
class DSAParams:
    """One sampled augmentation: the op family and its per-sample (or batch-1, shared) tensors."""

    op: str
    values: dict[str, torch.Tensor] = field(default_factory=dict)

    def index(self, ids: torch.Tensor) -> "DSAParams":
        """Per-sample parameters from per-group ones: sample i gets group ids[i]'s draw (one shared
        draw per class, as DSA/DM give each class its own siamese parameters)."""
        return DSAParams(self.op, {k: v[ids.cpu()] for k, v in self.values.items()})


@dataclass(frozen=True)
class DSA:
    """Reference magnitudes: flip 0.5, scale 1.2, rotate 15°, crop 0.125, cutout 0.5,
    brightness 1.0, saturation 2.0, contrast 0.5 (DatasetCondensation utils.ParamDiffAug)."""

    strategy: str = DEFAULT_STRATEGY
    flip: float = 0.5
    scale: float = 1.2
    rotate: float = 15.0
    crop: float = 0.125
    cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self):
        unknown = [op for op in self.ops if op not in OPS]
        if not self.ops or unknown:
            raise ConfigError(f"bad DSA strategy {self.strategy!r}: use '_'-joined ops from {', '.join(OPS)}")

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for op in self.strategy.split("_") if op)

    def sample(self, n: int, size: tuple[int, int], gen: torch.Generator, *, shared: bool = False) -> DSAParams:
        """Draw one op family and its parameters for `n` images of `size` (H, W) on the CPU generator."""
        op = self.ops[int(torch.randint(len(self.ops), (1,), generator=gen))]
        b = 1 if shared else n
        h, w = size

        def u(*shape):
            return torch.rand(b, *shape, generator=gen)

        if op == "color":
            values = {"brightness": u(), "saturation": u(), "contrast": u()}
        elif op == "flip":
            values = {"flip": u()}
        elif op == "scale":
            values = {"sx": u(), "sy": u()}
        elif op == "rotate":
            values = {"angle": u()}
        elif op == "crop":
            sh, sw = int(h * self.crop + 0.5), int(w * self.crop + 0.5)
            values = {
                "ty": torch.randint(-sh, sh + 1, (b,), generator=gen),
                "tx": torch.randint(-sw, sw + 1, (b,), generator=gen),
            }
        else:  # cutout
            ch, cw = int(h * self.cutout + 0.5), int(w * self.cutout + 0.5)
            values = {
                "cy": torch.randint(0, h + (1 - ch % 2), (b,), generator=gen),
                "cx": torch.randint(0, w + (1 - cw % 2), (b,), generator=gen),
            }
        return DSAParams(op, values)

    def apply(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Apply sampled parameters to a float batch; batch-1 parameters broadcast to any batch."""
        b = x.shape[0]
        v = {k: t.to(x.device, non_blocking=True).expand(b, *t.shape[1:]) for k, t in params.values.items()}
        return getattr(self, f"_{params.op}")(x, **v)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, *, shared: bool = False) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], tuple(x.shape[-2:]), gen, shared=shared))

    # --- the op families; `u` values are U[0, 1) draws mapped to each op's range here ---------
    def _color(self, x, brightness, saturation, contrast):
        x = x + (brightness.view(-1, 1, 1, 1) - 0.5) * self.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (saturation.view(-1, 1, 1, 1) * self.saturation) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (contrast.view(-1, 1, 1, 1) + self.contrast) + mean

    def _flip(self, x, flip):
        return torch.where(flip.view(-1, 1, 1, 1) < self.flip, x.flip(3), x)

    def _scale(self, x, sx, sy):
        lo = 1.0 / self.scale
        sx, sy = sx * (self.scale - lo) + lo, sy * (self.scale - lo) + lo
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, zero], -1), torch.stack([zero, sy, zero], -1)], 1)
        return _warp(x, theta)

    def _rotate(self, x, angle):
        a = (angle - 0.5) * 2 * self.rotate / 180 * math.pi
        zero = torch.zeros_like(a)
        theta = torch.stack([torch.stack([a.cos(), -a.sin(), zero], -1), torch.stack([a.sin(), a.cos(), zero], -1)], 1)
        return _warp(x, theta)

    def _crop(self, x, ty, tx):
        """Integer translation with zero fill: out[i, j] = x[i + ty, j + tx] where that is inside."""
        h, w = x.shape[-2:]
        sh, sw = int(h * self.crop + 0.5), int(w * self.crop + 0.5)
        padded = F.pad(x, (sw, sw, sh, sh))
        rows = (torch.arange(h, device=x.device) + sh).view(1, h) + ty.view(-1, 1)
        cols = (torch.arange(w, device=x.device) + sw).view(1, w) + tx.view(-1, 1)
        batch = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
        return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _cutout(self, x, cy, cx):
        """Zero one (cutout·H)×(cutout·W) square centred at (cy, cx), clipped to the image."""
        h, w = x.shape[-2:]
        ch, cw = int(h * self.cutout + 0.5), int(w * self.cutout + 0.5)
        rows = torch.arange(h, device=x.device).view(1, h) - (cy.view(-1, 1) - ch // 2)
        cols = torch.arange(w, device=x.device).view(1, w) - (cx.view(-1, 1) - cw // 2)
        inside = ((rows >= 0) & (rows < ch))[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]
        return x * (~inside).unsqueeze(1).to(x.dtype)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def strategy_for(dataset: str) -> str:
    """The reference strategy: no flip for digit datasets (MNIST, SVHN, digits)."""
    return NO_FLIP_STRATEGY if dataset.lower().startswith(("mnist", "digits", "svhn")) else DEFAULT_STRATEGY
