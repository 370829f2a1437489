"""Diversity of a distilled set in a teacher's feature space (LPLD Table 1 and Eq. 5).

- within-class cosine similarity: for each class, the mean cosine similarity of the teacher's
  `embed` features over all pairs of distinct images, averaged over classes (lower = more diverse);
- MMD² between the synthetic and the real features of each class with a Gaussian kernel
  k(a, b) = exp(−‖a − b‖² / 2σ²): mean k(s, s') + mean k(r, r') − 2·mean k(s, r) (the biased
  estimate, ≥ 0, defined at IPC 1), σ = the median pairwise distance of the class's real features
  (fixed by the real data, so every artifact is measured with the same kernel); averaged over classes.

Real features come from up to `real_per_class` training images per class, drawn with a seeded generator.
"""

from __future__ import annotations

import torch
from torch import nn

from ladd.core.errors import ArtifactError, ConfigError
from ladd.core.runtime import generator
from ladd.core.types import Dataset, normalize
from ladd.data.stream import gather


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, dataset: Dataset, chunk: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model.embed(normalize(x.to(device), dataset.mean, dataset.std)).double().cpu() for x in images.split(chunk)])


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """Mean cos(f_i, f_j) over pairs i ≠ j."""
    n = len(features)
    if n < 2:
        raise ConfigError("within-class cosine similarity needs at least 2 images per class (IPC >= 2)")
    unit = torch.nn.functional.normalize(features, dim=1)
    sims = unit @ unit.T
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def median_distance(features: torch.Tensor) -> float:
    d = torch.cdist(features, features)
    off = d[~torch.eye(len(features), dtype=torch.bool)]
    return float(off.median()) if len(off) else 1.0


def gaussian_mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    """Biased MMD² with k(a, b) = exp(−‖a − b‖² / 2σ²)."""

    def k(a, b):
        return torch.exp(-(torch.cdist(a, b) ** 2) / (2 * sigma**2))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def diversity(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, dataset: Dataset, real_per_class: int = 500, seed: int = 0
) -> dict:
    """Per-class and mean within-class cosine similarity (synthetic and real) and MMD²."""
    if real_per_class < 2:
        raise ConfigError(f"--real-per-class {real_per_class} must be >= 2")
    syn = embed(model, images, dataset)
    gen = generator(seed)
    rows = []
    for c, name in enumerate(dataset.class_names):
        mine = syn[labels == c]
        if len(mine) == 0:
            raise ArtifactError(f"the artifact has no image of class {name!r}: diversity needs every class")
        members = (dataset.train.labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)[:real_per_class]]
        real = embed(model, gather(dataset.train.images, members), dataset)
        rows.append(
            {
                "class": name,
                "cosine": mean_pairwise_cosine(mine) if len(mine) > 1 else None,
                "real_cosine": mean_pairwise_cosine(real),
                "mmd2": gaussian_mmd2(mine, real, median_distance(real)),
            }
        )

    def mean(key):
        return None if any(r[key] is None for r in rows) else sum(r[key] for r in rows) / len(rows)

    return {
        "within_class_cosine": mean("cosine"),
        "real_within_class_cosine": mean("real_cosine"),
        "mmd2": mean("mmd2"),
        "real_per_class": real_per_class,
        "seed": seed,
        "per_class": rows,
    }
