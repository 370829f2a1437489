"""FKD-style stored augmentation: sample RandomResizedCrop + flip + CutMix parameters once per
epoch, and render them exactly, one sample at a time, whatever the batch.

SRe²L's relabel (VILA-Lab/SRe2L@8d00cba relabel/utils_fkd.py) records per *batch* the crop
coordinates and flip flags of every sample, a CutMix permutation of batch positions, and one λ and
one box for the whole batch; replay then needs the same sampler seed and batch size and a patched
PyTorch fetcher. Here the CutMix partner is an *image index* and the rows of a relabel batch are
contiguous, so a sample's input is a pure function of (stored epoch, row): students replay it with
stock PyTorch, as the stored batches (LPLD) or reshuffled at any batch size. λ and the box are
drawn once per relabel batch (`mix_per="batch"`, the reference) or once per sample (`"sample"`).

Rendering is a per-sample integer crop, `F.interpolate` (bilinear, align_corners=False, no
antialias, as torchvision's RandomResizedCrop on tensors) and a flip; computing each sample on its
own keeps the result bitwise independent of which other samples share its batch (a batched warp,
e.g. kornia's, is not guaranteed to be).
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


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def sample_crops(n: int, height: int, width: int, gen: torch.Generator, scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """n RandomResizedCrop boxes as int64 (top, left, h, w): torchvision's get_params rule,
    vectorized (the first of 10 attempts that fits, else the whole image)."""
    area = height * width
    target = area * _uniform(n * ATTEMPTS, *scale, gen)
    aspect = torch.exp(_uniform(n * ATTEMPTS, math.log(ratio[0]), math.log(ratio[1]), gen))
    w = torch.sqrt(target * aspect).round().long().view(n, ATTEMPTS)
    h = torch.sqrt(target / aspect).round().long().view(n, ATTEMPTS)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # index of the first fitting attempt
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    none = ~fits.any(1)
    h[none], w[none] = height, width
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = (u[:, 0] * (height - h + 1)).floor().long()
    left = (u[:, 1] * (width - w + 1)).floor().long()
    return torch.stack([top, left, h, w], 1)


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


def sample_epoch(n: int, batch_size: int, height: int, width: int, gen: torch.Generator, *, cutmix: bool = True,
                 mix_per: str = "batch") -> Epoch:
    """An epoch of the relabel loader: a random order split into batches of `batch_size`, and per
    sample a crop, a flip and a CutMix partner drawn from its own batch (a permutation of the
    batch, as the reference's `rand_index`); λ and the box once per batch (`mix_per="batch"`, the
    reference's) or once per sample. Without CutMix the partner is the sample itself and the box
    is empty (λ = 1)."""
    if mix_per not in ("batch", "sample"):
        raise ValueError(f"mix_per {mix_per!r} is not batch or sample")
    order = torch.randperm(n, generator=gen)
    boxes = sample_crops(n, height, width, gen)
    scale = torch.tensor([height, width, height, width], dtype=torch.float64)
    crop = (boxes.double() / scale).float()
    flip = torch.rand(n, generator=gen) < 0.5
    draws = math.ceil(n / batch_size) if mix_per == "batch" else n
    if cutmix:
        partner_pos = torch.cat([start + torch.randperm(len(chunk), generator=gen)
                                 for start, chunk in zip(range(0, n, batch_size), torch.arange(n).split(batch_size))])
        lam, box = sample_cutmix(draws, height, width, gen)
    else:
        partner_pos, lam, box = torch.arange(n), torch.ones(draws), torch.zeros(draws, 4, dtype=torch.int16)
    return Epoch(order, crop, flip, order[partner_pos], lam, box, batch_size if mix_per == "batch" else None)


def crop_pixels(crop: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalized crop coordinates → int64 (top, left, h, w) pixels (exact: the float32 error of
    i/H times H is far below 0.5)."""
    scale = torch.tensor([height, width, height, width], dtype=torch.float64)
    return (crop.double() * scale).round().long()


def view(image: torch.Tensor, crop_px: list[int], flip: bool) -> torch.Tensor:
    """One image (C×H×W float) cropped at (top, left, h, w) pixels, resized back to H×W and optionally flipped."""
    _, height, width = image.shape
    top, left, h, w = crop_px
    out = F.interpolate(image[None, :, top : top + h, left : left + w], size=(height, width), mode="bilinear",
                        align_corners=False, antialias=False)[0]
    return out.flip(-1) if flip else out


def render(images: torch.Tensor, mean, std, epoch: Epoch, rows: torch.Tensor) -> torch.Tensor:
    """Normalized inputs of the stored samples at `rows` of `epoch` (a B×C×H×W tensor): each
    sample's view with the box pasted from its partner's view of the same epoch."""
    _, _, height, width = images.shape
    position = torch.empty_like(epoch.order)
    position[epoch.order] = torch.arange(len(epoch.order))  # image → its row in this epoch
    partner_rows = position[epoch.mix_index[rows]]
    own = normalize(images[epoch.order[rows].to(images.device, non_blocking=True)], mean, std)
    partners = normalize(images[epoch.mix_index[rows].to(images.device, non_blocking=True)], mean, std)
    # every per-sample parameter as Python numbers in one conversion each, not a tensor op per sample
    crops, partner_crops = (crop_pixels(epoch.crop[r], height, width).tolist() for r in (rows, partner_rows))
    flips, partner_flips = epoch.flip[rows].tolist(), epoch.flip[partner_rows].tolist()
    out = []
    for i, (y1, x1, y2, x2) in enumerate(epoch.mix(rows)[1].tolist()):
        x = view(own[i], crops[i], flips[i])
        if y2 > y1 and x2 > x1:
            partner = view(partners[i], partner_crops[i], partner_flips[i])
            x[:, y1:y2, x1:x2] = partner[:, y1:y2, x1:x2]
        out.append(x)
    return torch.stack(out)
