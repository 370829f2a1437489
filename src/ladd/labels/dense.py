"""LADD's dense labels (Algorithm 1): y^d_{i,j} = teacher(S_j(x_i)) for the N² sub-images, plus
the teacher's global soft label teacher(x_i), used by the soft-label methods.

Under torchrun the ranks share the chunks of one process's chunking (`dist.mine`) and gather the
results, so every rank holds the same bytes as one process: a chunk is never re-cut, because a
forward pass on another batch size may round differently."""

from __future__ import annotations

import torch

from ladd.augment.subsample import views
from ladd.core import dist, progress
from ladd.core.runtime import Runtime
from ladd.core.types import normalize
from ladd.labels.soft import Teacher


# Crops per forward pass. On 2 CPU cores small passes stay in cache: for mnist5k IPC 10 with
# ConvNet-W64, 50 crops per pass gave 4,146 crops/s against 1,888 at 2,048 and 2,475 for a
# per-crop loop (benchmarks/dense_label_speed.py). GPUs want large passes, of a fixed number of
# pixels: each crop is resized back to the image's size, and 4,096 crops of 128 px would hold
# 16 times the activations of 4,096 of 32 px (a ConvNet-128's first layer alone: 34 GB).
CPU_CROPS_PER_PASS = 50
GPU_PIXELS_PER_PASS = 4096 * 32 * 32


def crops_per_pass(device: torch.device, shape: tuple[int, int]) -> int:
    """The default number of H×W crops a forward pass of the teacher takes on `device`."""
    if device.type == "cpu":
        return CPU_CROPS_PER_PASS
    return max(1, GPU_PIXELS_PER_PASS // (shape[0] * shape[1]))


@torch.no_grad()
def dense_labels(
    teacher: Teacher,
    images: torch.Tensor,
    mean,
    std,
    n: int,
    r: float,
    *,
    per_pass: int | None = None,
    runtime: Runtime | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense B×N²×C, global soft B×C) for images B×C×H×W.

    All crops of a chunk of images go through the teacher in one forward pass (no loop over crops);
    the chunk size only trades speed for memory. The teacher runs under the runtime's precision
    (`Speed.precision`; softmax, temperature and top-k in fp32), and results are copied back
    without the host waiting for each chunk.
    """
    device = teacher.device
    runtime = runtime or Runtime(device)
    per_chunk = max(1, (per_pass or crops_per_pass(device, images.shape[-2:])) // (n * n))
    chunks = images.split(per_chunk)
    mine, done = dist.mine(len(chunks)), {}
    with progress.bar("dense labels", len(mine)) as advance, runtime.settings(), runtime.autocast():
        for i in mine:
            x = normalize(chunks[i].to(device, non_blocking=True), mean, std)
            v = views(x, n, r)  # b×N²×C×H×W
            done[i] = (runtime.fetch(teacher(v.flatten(0, 1)).view(x.shape[0], n * n, -1)), runtime.fetch(teacher(x)))
            advance()
    runtime.wait()
    count = len(chunks)
    return dist.concat({i: d for i, (d, _) in done.items()}, count), dist.concat({i: s for i, (_, s) in done.items()}, count)


@torch.no_grad()
def global_labels(
    teacher: Teacher, images: torch.Tensor, mean, std, *, batch_size: int = 256, runtime: Runtime | None = None
) -> torch.Tensor:
    """The teacher's soft label of each whole, un-augmented image (as the reference labels once)."""
    runtime = runtime or Runtime(teacher.device)
    chunks = images.split(batch_size)
    with runtime.settings(), runtime.autocast():
        done = {
            i: runtime.fetch(teacher(normalize(chunks[i].to(teacher.device, non_blocking=True), mean, std))) for i in dist.mine(len(chunks))
        }
    runtime.wait()
    return dist.concat(done, len(chunks))
