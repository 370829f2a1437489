"""LADD's static sub-sampling S: N×N crops covering R of each axis at a uniform stride.

The crops are a pure function of the image and (N, R): nothing per image is stored, so the
dense labels are the only extra bytes LADD adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ladd.core.errors import ConfigError


def _round(v: float) -> int:
    """Round half up (Python's round() is half-to-even, which would make strides uneven)."""
    return int(v + 0.5)


def crop_geometry(size: int, n: int, r: float) -> tuple[int, list[int]]:
    """Crop side and the N offsets along an axis of `size` pixels.

    Offsets step by (1 − R)/(N − 1) of the axis, so the first crop touches one edge and the last
    the other: N=5, R=0.625 on 128 px gives 80 px crops at offsets 0, 12, 24, 36, 48.
    """
    if n < 2:
        raise ConfigError(f"N={n} sub-images per axis is too few: LADD needs N >= 2 (default 5)")
    if not 0.0 < r <= 1.0:
        raise ConfigError(f"R={r} is outside (0, 1]: R is the fraction of each axis a crop covers (default 0.625)")
    crop = _round(r * size)
    if crop < 2:
        raise ConfigError(f"R={r} on {size} px images gives {crop} px crops: raise R so crops are at least 2 px")
    return crop, [_round(k * (size - crop) / (n - 1)) for k in range(n)]


def repeated_crops(shape: tuple[int, int], n: int, r: float) -> str | None:
    """Why some of the N² sub-images of an H×W image are the same crop, or None. On small images
    the offsets round to fewer than N distinct pixels (8 px, N=5, R=0.625: 0, 1, 2, 2, 3), so
    those views and their dense labels repeat: stored bytes and student compute that add nothing."""
    axes = [crop_geometry(size, n, r) for size in shape]
    distinct = [len(set(offsets)) for _, offsets in axes]
    if distinct == [n, n]:
        return None
    (ch, oy), (cw, ox) = axes
    most = min(shape[0] - ch, shape[1] - cw) + 1
    return (
        f"N={n}, R={r:g} on {shape[0]}×{shape[1]} images: {ch}×{cw} px crops at offsets {', '.join(map(str, oy))} (rows) and "
        f"{', '.join(map(str, ox))} (columns), so only {distinct[0] * distinct[1]} of the {n * n} sub-images differ and the "
        f"rest repeat them with the same dense label: choose N <= {most} for this R (or a smaller R)"
    )


def views(x: torch.Tensor, n: int, r: float, index: torch.Tensor | None = None) -> torch.Tensor:
    """Crops of a float batch B×C×H×W resized back to H×W, as B×K×C×H×W.

    `index` (B×K, values in [0, N²), row-major: j = row·N + col) picks K crops per image; None
    takes all N². All crops are gathered and resized in one call, with no loop over crops.
    """
    b, c, h, w = x.shape
    ch, oy = crop_geometry(h, n, r)
    cw, ox = crop_geometry(w, n, r)
    if index is None:
        index = torch.arange(n * n, device=x.device).expand(b, -1)
    k = index.shape[1]
    oy_t = torch.tensor(oy).to(x.device, non_blocking=True)[index // n]  # B×K (no host wait on CUDA)
    ox_t = torch.tensor(ox).to(x.device, non_blocking=True)[index % n]
    rows = oy_t[..., None] + torch.arange(ch, device=x.device)  # B×K×ch
    cols = ox_t[..., None] + torch.arange(cw, device=x.device)  # B×K×cw
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    crops = x.permute(0, 2, 3, 1)[batch, rows[..., :, None], cols[..., None, :]]  # B×K×ch×cw×C
    crops = crops.reshape(b * k, ch, cw, c).permute(0, 3, 1, 2)
    if (ch, cw) != (h, w):
        crops = F.interpolate(crops, size=(h, w), mode="bilinear", align_corners=False)
    return crops.reshape(b, k, c, h, w)
