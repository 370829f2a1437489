"""The data that flows between stages."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch


PIXEL_DTYPES = (torch.uint8, torch.float32)


@dataclass(frozen=True)
class ImageSet:
    """Images N×C×H×W in pixel units — uint8, or float32 in [0, 255] for learned images kept
    unquantized — with int64 labels; `info` carries what a learned method learned besides pixels
    (e.g. MTT's student learning rate) into the manifest; `regions` (N×k×C, optional) are soft
    labels of the k tiles of squeezed images (LIC/RDED), stored as dense labels; `flops` what
    making them cost (optimization loops, scoring passes, networks trained only for them; the
    labeler/observer/teacher is charged to the labels), None when unknown (imported sets); `soft`
    (N×C, optional) global soft labels learned with the images (MTT with `learn_labels`)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: dict = field(default_factory=dict)
    regions: torch.Tensor | None = None
    flops: int | None = 0
    soft: torch.Tensor | None = None

    def __post_init__(self):
        if self.images.dtype not in PIXEL_DTYPES or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 or float32 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """The images at `index` with their labels, region and soft labels; `info` and `flops`
        describe how the whole set was made, so they stay (a subset cost what the set cost)."""
        regions = None if self.regions is None else self.regions[index]
        soft = None if self.soft is None else self.soft[index]
        return ImageSet(self.images[index], self.labels[index], self.info, regions, self.flops, soft)


@dataclass(frozen=True)
class Dataset:
    """A source dataset: train/test splits plus what a model needs to read them."""

    name: str
    train: ImageSet
    test: ImageSet
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


@functools.lru_cache(maxsize=16)
def _channel_stats_on(mean: tuple, std: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset's mean/std as 1×C×1×1 tensors on `device`, made once (normalize runs every step)."""

    def as_tensor(v):
        return torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    return as_tensor(mean), as_tensor(std)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Pixels (uint8, or float32 in 0..255) → float, standardized per channel with a dataset's mean/std."""
    mean_t, std_t = _channel_stats_on(tuple(mean), tuple(std), images.device)
    return (images.float() / 255.0 - mean_t) / std_t


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Standardized values back to pixels in [0, 1] units, unclamped (`normalize` undone but for its /255)."""
    mean_t, std_t = _channel_stats_on(tuple(mean), tuple(std), x.device)
    return x * std_t + mean_t


def to_pixels(x: torch.Tensor, mean, std, *, keep_float: bool = False) -> torch.Tensor:
    """Inverse of `normalize`, clamped to valid pixels: rounded to uint8 (what is stored and
    counted by default), or float32 in [0, 255] when `keep_float`."""
    pixels = denormalize(x.detach(), mean, std).clamp(0, 1) * 255
    return pixels.float() if keep_float else quantize(pixels)


def quantize(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixels in 0..255 → the uint8 pixels ladd stores and counts by default."""
    return pixels.round().clamp(0, 255).to(torch.uint8)


def pixel_histogram(images: torch.Tensor, chunk_pixels: int = 1 << 24) -> torch.Tensor:
    """C×256 int64: how many times each uint8 value occurs in each channel, read a chunk at a time
    (about `chunk_pixels` values), so a memory-mapped split is never held in memory whole."""
    c = images.shape[1]
    hist = torch.zeros(c, 256, dtype=torch.int64)
    rows = max(1, chunk_pixels // max(1, images[0].numel())) if len(images) else 1
    for start in range(0, len(images), rows):
        chunk = images[start : start + rows]
        for k in range(c):
            hist[k] += torch.bincount(chunk[:, k].reshape(-1), minlength=256)
    return hist


def histogram_stats(hist) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units from a C×256 pixel histogram. The sums are exact integers,
    so the result does not depend on how the pixels were chunked or which process counted them: the
    dataset store (its decode workers count) and `channel_stats` on the same pixels agree exactly."""
    hist = torch.as_tensor(hist, dtype=torch.int64)
    values = torch.arange(256, dtype=torch.int64)
    n = hist.sum(1)
    s1, s2 = (hist * values).sum(1), (hist * values * values).sum(1)  # exact: < 2^63 for any real dataset
    mean = s1.double() / n.double() / 255.0
    std = (s2.double() / n.double() / 255.0**2 - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 images in [0, 1] units, from a pixel histogram counted in chunks
    (memory bounded by the chunk, whatever the number of images)."""
    if images.dtype == torch.uint8:
        return histogram_stats(pixel_histogram(images))
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(256):
        x = chunk.double() / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
