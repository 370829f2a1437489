"""Squeezing N images into one mosaic (LIC's squeeze, RDED's patch mosaic) and expanding it back.

A squeezed image tiles √N × √N resized images, tile k = row·√N + col. The tile grid is LADD's
static sub-sampler with n = √N and R = 1/√N (`augment/subsample.py`): when the side is divisible
by √N its crops are exactly the tiles (crop side H/√N, offsets k·H/√N), so `expand` is
`subsample.views` and the region labels of a squeezed image are LADD dense labels with that
geometry. Sides not divisible by √N are refused: there the sub-sampler's rounding makes crops
overlap or leave gaps (32 px, √N = 3: 11 px crops at 0, 11, 21), so a tile would not be a crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ladd.augment.subsample import views
from ladd.core.errors import ConfigError


def grid_side(tiles: int, shape: tuple[int, int, int]) -> int:
    """√N for N tiles on images of `shape` (C, H, W); refuses N that does not tile the images exactly."""
    _, h, w = shape
    valid = [k * k for k in range(2, min(h, w) // 2 + 1) if h % k == 0 and w % k == 0]
    side = math.isqrt(tiles)
    if tiles < 4 or side * side != tiles or h % side or w % side:
        raise ConfigError(
            f"tiles N={tiles} does not tile {h}×{w} images into √N×√N equal squares: "
            f"valid N here: {', '.join(map(str, valid[:8])) or 'none'}"
        )
    return side


def geometry(tiles: int, shape: tuple[int, int, int]) -> tuple[int, float]:
    """(n, R) of the LADD sub-sampler whose crops are the tiles: the artifact's dense-label geometry."""
    n = grid_side(tiles, shape)
    return n, 1.0 / n


def tile(parts: torch.Tensor) -> torch.Tensor:
    """B×N×C×h×w tile-sized images → B×C×(√N·h)×(√N·w), part k at row k // √N, column k % √N."""
    b, k, c, h, w = parts.shape
    n = math.isqrt(k)
    return parts.view(b, n, n, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, n * h, n * w)


def untile(x: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `tile`: B×C×H×W → B×n²×C×(H/n)×(W/n), by reshaping only."""
    b, c, h, w = x.shape
    return x.view(b, c, n, h // n, n, w // n).permute(0, 2, 4, 1, 3, 5).reshape(b, n * n, c, h // n, w // n)


def shrink(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float images down with antialiasing (as torchvision's Resize does for tensors)."""
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def squeeze(originals: torch.Tensor) -> torch.Tensor:
    """B×N×C×H×W float images → B×C×H×W: each resized to (H/√N, W/√N) and tiled."""
    b, k, c, h, w = originals.shape
    n = math.isqrt(k)
    small = shrink(originals.flatten(0, 1), (h // n, w // n))
    return tile(small.view(b, k, c, h // n, w // n))


def expand(x: torch.Tensor, n: int) -> torch.Tensor:
    """B×C×H×W → B×n²×C×H×W: every tile upsampled back to full size (the sub-sampler's views)."""
    return views(x, n, 1.0 / n)
