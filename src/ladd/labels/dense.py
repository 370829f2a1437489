"""LADD's dense labels (Algorithm 1): y^d_{i,j} = softmax(g(S_j(x_i))) for the N² sub-images,
plus the labeler's global soft label softmax(g(x_i)) used by the soft-label ablations."""

from __future__ import annotations

import torch
from torch import nn

from ladd.augment.subsample import views
from ladd.core import progress
from ladd.core.types import normalize


# Crops per forward pass. On 2 CPU cores small passes stay in cache: for mnist5k IPC 10 with
# ConvNet-W64, 50 crops per pass gave 4,146 crops/s against 1,888 at 2,048 and 2,475 for a
# per-crop loop (benchmarks/dense_label_speed.py); GPUs want large passes.
CROPS_PER_PASS = {"cpu": 50, "cuda": 4096}


@torch.no_grad()
def dense_labels(
    labeler: nn.Module, images: torch.Tensor, mean, std, n: int, r: float, *, crops_per_pass: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense B×N²×C, global soft B×C) for images B×C×H×W.

    All crops of a chunk of images go through the labeler in one forward pass (no loop over crops);
    the chunk size only trades speed for memory.
    """
    labeler.eval()
    device = next(labeler.parameters()).device
    crops_per_pass = crops_per_pass or CROPS_PER_PASS.get(device.type, 4096)
    per_chunk = max(1, crops_per_pass // (n * n))
    dense, soft = [], []
    chunks = images.split(per_chunk)
    with progress.bar("dense labels", len(chunks)) as advance:
        for chunk in chunks:
            x = normalize(chunk.to(device), mean, std)
            v = views(x, n, r)  # b×N²×C×H×W
            dense.append(labeler(v.flatten(0, 1)).softmax(-1).view(x.shape[0], n * n, -1).cpu())
            soft.append(labeler(x).softmax(-1).cpu())
            advance()
    return torch.cat(dense), torch.cat(soft)
