"""FKD-style stored augmentation: sample RandomResizedCrop + flip + CutMix parameters once per
epoch, and render them a batch at a time, each sample the same whatever shares its batch.

SRe²L's relabel (VILA-Lab/SRe2L@8d00cba relabel/utils_fkd.py) records per *batch* the crop
coordinates and flip flags of every sample, a CutMix permutation of batch positions, and one λ and
one box for the whole batch; replay then needs the same sampler seed and batch size and a patched
PyTorch fetcher. Here the CutMix partner is an *image index* and the rows of a relabel batch are
contiguous, so a sample's input is a pure function of (stored epoch, row): students replay it with
stock PyTorch, as the stored batches (LPLD) or reshuffled at any batch size. λ and the box are
drawn once per relabel batch (`mix_per="batch"`, the reference) or once per sample (`"sample"`).

Rendering crops each sample at integer pixels, resizes it back bilinearly as `F.interpolate`
(align_corners=False, no antialias, as torchvision's RandomResizedCrop on tensors) and flips it, for
the whole batch in one `grid_sample` given interpolate's source coordinates, held inside each crop
as interpolate holds them (kornia's `crop_and_resize`, also a grid_sample, maps corner pixel to
corner pixel: other sample points). Every output pixel is computed on its own, so a sample is the
same bits whatever shares its batch. It equals one `F.interpolate` per sample up to grid_sample's
float32 normalized coordinates, which move a tap by about 1e-7 · side pixels: up to 1.2e-5 at
32 px, 2.9e-5 at 64 px and 1.4e-4 at 224 px on random images normalized with std 0.25, under 1%
of a uint8 step (benchmarks/replay_render.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ladd.core.types import normalize

# Stored per sample, in this order: the six components of LPLD Table 24 (labels are the sixth).
PARAMS = ("crop", "flip", "mix_index", "mix_lambda", "mix_box")

# RandomResizedCrop(scale=(0.08, 1)) + flip + CutMix with λ ~ Beta(1, 1): SRe²L relabel defaults
# (VILA-Lab/SRe2L@8d00cba relabel/generate_soft_label.py: --min-scale-crops 0.08, cutmix β 1;
# torchvision's default aspect-ratio range 3/4..4/3). 10 attempts, then the whole image, as
# torchvision's RandomResizedCrop.get_params.
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
CUTMIX_BETA = 1.0
ATTEMPTS = 10


@dataclass(frozen=True)
class Epoch:
    """One stored epoch's parameters, row k = the k-th sample visited (`order[k]` = its image);
    relabel batch b is rows b·B … b·B + B − 1. D = ⌈K/B⌉ CutMix draws (one per batch) or K (one per row).

    crop       float32 K×4  (top/H, left/W, height/H, width/W): the reference's normalized coords
    flip       bool    K    horizontal flip after the crop
    mix_index  int64   K    image index of the CutMix partner (a permutation of the relabel batch)
    mix_lambda float32 D    share of the sample's own pixels after the box is clipped
    mix_box    int16   D×4  (y1, x1, y2, x2) pixels pasted from the partner's own augmented view
    """

    order: torch.Tensor
    crop: torch.Tensor
    flip: torch.Tensor
    mix_index: torch.Tensor
    mix_lambda: torch.Tensor
    mix_box: torch.Tensor
    mix_batch: int | None = None  # B when one CutMix draw serves a relabel batch; None: one per row

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"order": self.order, **{k: getattr(self, k) for k in PARAMS}}

    def mix(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """λ and box of each of `rows`."""
        at = rows if self.mix_batch is None else rows // self.mix_batch
        return self.mix_lambda[at], self.mix_box[at]


def crop_boxes(
    area_u: torch.Tensor,
    aspect_u: torch.Tensor,
    position_u: torch.Tensor,
    height: int,
    width: int,
    scale=SCALE,
    ratio=RATIO,
    *,
    fit: str = "retry",
) -> torch.Tensor:
    """RandomResizedCrop boxes as int64 (top, left, h, w) from float64 uniforms in [0, 1): area and
    log-aspect draws n×A (A attempts), position draws n×2. The area is `scale` × the image's, the
    aspect log-uniform in `ratio`; a box that does not fit the image is, by `fit`:

    - "retry": replaced by the next attempt, the whole image when none fits — torchvision's
      RandomResizedCrop.get_params (A = 10) for images whose own aspect lies in `ratio`; the SRe²L
      relabel's rule (VILA-Lab/SRe2L@8d00cba relabel/utils_fkd.py);
    - "clamp": each side cut to the image (A = 1) — recover's jitter, one draw per step. SRe²L's
      recover calls torchvision's transform (VILA-Lab/SRe2L@16b1cc3 recover/data_synthesis.py);
      ladd's recover keeps its own rule so the images it made (distill cache format 2) stay valid.
    """
    target = height * width * (area_u * (scale[1] - scale[0]) + scale[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(aspect_u * (log_hi - log_lo) + log_lo)
    w = torch.sqrt(target * aspect).round().long()
    h = torch.sqrt(target / aspect).round().long()
    if fit == "clamp":
        h, w = h[:, 0].clamp(1, height), w[:, 0].clamp(1, width)
    elif fit == "retry":
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.float().argmax(1, keepdim=True)  # index of the first fitting attempt
        h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
        none = ~fits.any(1)
        h[none], w[none] = height, width
    else:
        raise ValueError(f"fit {fit!r} is not retry or clamp")
    top = (position_u[:, 0] * (height - h + 1)).floor().long()
    left = (position_u[:, 1] * (width - w + 1)).floor().long()
    return torch.stack([top, left, h, w], 1)


def sample_crops(n: int, height: int, width: int, gen: torch.Generator, scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """n boxes by torchvision's rule (`crop_boxes`, fit "retry"), every attempt drawn up front."""
    area_u, aspect_u = (torch.rand(n, ATTEMPTS, generator=gen, dtype=torch.float64) for _ in range(2))
    return crop_boxes(area_u, aspect_u, torch.rand(n, 2, generator=gen, dtype=torch.float64), height, width, scale, ratio)


def sample_cutmix(n: int, height: int, width: int, gen: torch.Generator, beta: float = CUTMIX_BETA) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample λ ~ Beta(β, β) and the CutMix box (Yun et al.'s rand_bbox, as the reference):
    side √(1−λ) of each axis around a uniform centre, clipped; λ is then the kept area share."""
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
    lam = torch.from_numpy(rng.beta(beta, beta, n))
    cut = torch.sqrt(1 - lam)
    ch, cw = (height * cut).long(), (width * cut).long()
    cy = (torch.rand(n, generator=gen, dtype=torch.float64) * height).long()
    cx = (torch.rand(n, generator=gen, dtype=torch.float64) * width).long()
    y1, y2 = (cy - ch // 2).clamp(0, height), (cy + ch // 2).clamp(0, height)
    x1, x2 = (cx - cw // 2).clamp(0, width), (cx + cw // 2).clamp(0, width)
    kept = 1 - ((y2 - y1) * (x2 - x1)).double() / (height * width)
    return kept.float(), torch.stack([y1, x1, y2, x2], 1).to(torch.int16)


def sample_epoch(
    n: int,
    batch_size: int,
    height: int,
    width: int,
    gen: torch.Generator,
    *,
    cutmix: bool = True,
    mix_per: str = "batch",
    flip: bool = True,
) -> Epoch:
    """An epoch of the relabel loader: a random order split into batches of `batch_size`, and per
    sample a crop, a flip (with probability 1/2; never without `flip`, drawn all the same so the
    other draws do not move) and a CutMix partner drawn from its own batch (a permutation of the
    batch, as the reference's `rand_index`); λ and the box once per batch (`mix_per="batch"`, the
    reference's) or once per sample. Without CutMix the partner is the sample itself and the box
    is empty (λ = 1)."""
    if mix_per not in ("batch", "sample"):
        raise ValueError(f"mix_per {mix_per!r} is not batch or sample")
    order = torch.randperm(n, generator=gen)
    boxes = sample_crops(n, height, width, gen)
    scale = torch.tensor([height, width, height, width], dtype=torch.float64)
    crop = (boxes.double() / scale).float()
    flips = torch.rand(n, generator=gen) < (0.5 if flip else 0.0)
    draws = math.ceil(n / batch_size) if mix_per == "batch" else n
    if cutmix:
        partner_pos = torch.cat(
            [
                start + torch.randperm(len(chunk), generator=gen)
                for start, chunk in zip(range(0, n, batch_size), torch.arange(n).split(batch_size))
            ]
        )
        lam, box = sample_cutmix(draws, height, width, gen)
    else:
        partner_pos, lam, box = torch.arange(n), torch.ones(draws), torch.zeros(draws, 4, dtype=torch.int16)
    return Epoch(order, crop, flips, order[partner_pos], lam, box, batch_size if mix_per == "batch" else None)


def crop_pixels(crop: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalized crop coordinates → int64 (top, left, h, w) pixels (exact: the float32 error of
    i/H times H is far below 0.5)."""
    scale = torch.tensor([height, width, height, width], dtype=torch.float64)
    return (crop.double() * scale).round().long()


def _coords(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """Per sample, the source coordinate of each of `size` output pixels along one axis when pixels
    start … start + length − 1 are resized to `size` by F.interpolate (bilinear, align_corners=False:
    scale·(o + ½) − ½, rounded to float32 once as PyTorch's CPU kernel's fused multiply-add does),
    held inside the crop — interpolate clamps at the crop's edges, grid_sample at the image's —
    and normalized for grid_sample(align_corners=True)."""
    scale = (length.float() / size).double()
    src = (scale[:, None] * (torch.arange(size, dtype=torch.float64, device=length.device) + 0.5) - 0.5).float()
    src = torch.minimum(src.clamp(min=0), (length - 1)[:, None].float()) + start[:, None]
    return (src.double() * (2 / max(size - 1, 1)) - 1).float()


def views(x: torch.Tensor, crop_px: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Images x (B×C×H×W float) each cropped at its (top, left, h, w) pixels, resized back to H×W
    and flipped where `flip`, by one grid_sample over the batch (a flip reverses a sample's columns)."""
    b, _, height, width = x.shape
    top, left, h, w = crop_px.to(x.device).unbind(1)
    cols = _coords(left, w, width)
    grid = torch.empty(b, height, width, 2, device=x.device)
    grid[..., 0] = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)[:, None, :]
    grid[..., 1] = _coords(top, h, height)[:, :, None]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def render(images: torch.Tensor, mean, std, epoch: Epoch, rows: torch.Tensor) -> torch.Tensor:
    """Normalized inputs of the stored samples at `rows` of `epoch` (a B×C×H×W tensor): each
    sample's view with the box pasted from its partner's view of the same epoch. The partners'
    views are rendered in the same call, unless no row has a box (CutMix off)."""
    _, _, height, width = images.shape
    y1, x1, y2, x2 = (t[:, None, None] for t in epoch.mix(rows)[1].long().unbind(1))
    at, index = rows, epoch.order[rows]
    if ((y2 > y1) & (x2 > x1)).any():
        position = torch.empty_like(epoch.order)
        position[epoch.order] = torch.arange(len(epoch.order))  # image → its row in this epoch
        partners = epoch.mix_index[rows]
        at, index = torch.cat([rows, position[partners]]), torch.cat([index, partners])
    x = views(
        normalize(images[index.to(images.device, non_blocking=True)], mean, std), crop_pixels(epoch.crop[at], height, width), epoch.flip[at]
    )
    if len(at) == len(rows):
        return x
    ys, xs = torch.arange(height)[None, :, None], torch.arange(width)[None, None, :]
    box = ((ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)).to(x.device, non_blocking=True)
    return torch.where(box[:, None], x[len(rows) :], x[: len(rows)])
