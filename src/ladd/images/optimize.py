"""The one loop for learned images: SGD (or Adam) on the synthetic pixels, checkpointed and resumable.

A method supplies `step(iteration, syn, gen) -> loss`; the loop updates the images, shows
progress, and every `every` iterations saves images, optimizer and generator state in one file,
so `resume=True` continues with the same result as an uninterrupted run. SRe²L/LPLD recover
uses the Adam + cosine-lr + pixel-clipping options. The FLOPs of one iteration (step + backward)
are counted once and kept in the checkpoint: every iteration does the same work, so the loop
costs iterations × that, however often it was interrupted.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ladd.core import progress
from ladd.core.checkpoint import load_state, save_state
from ladd.core.errors import LaddError
from ladd.core.runtime import generator, seeded
from ladd.cost.flops import count as count_flops

STATE = "images_state.safetensors"


@dataclass(frozen=True)
class Optimized:
    images: torch.Tensor
    losses: list[float]  # per iteration
    flops: int  # the whole loop: iterations × one iteration's step + backward


def optimize_images(
    syn: torch.Tensor,
    step: Callable[[int, torch.Tensor, torch.Generator], torch.Tensor],
    *,
    iterations: int,
    lr: float,
    momentum: float = 0.0,
    seed: int,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    every: int = 100,
    description: str = "distill",
    extra: dict[str, tuple[torch.Tensor, float]] | None = None,
    betas: tuple[float, float] | None = None,
    cosine: bool = False,
    project: Callable[[torch.Tensor], None] | None = None,
) -> Optimized:
    """Optimize a float image tensor.

    `extra` maps names to (tensor, lr): other learned tensors (MTT's learning rate), optimized in
    place by the same SGD (own lr, same momentum) and checkpointed with the images. `betas` picks
    Adam instead of SGD; `cosine` anneals every lr as lr·½(1 + cos(π·it/iterations)); `project`
    runs on the images (no grad) after each update, e.g. to clip them to valid pixels."""
    syn = syn.detach().clone().requires_grad_(True)
    extra = extra or {}
    groups = [{"params": [syn], "lr": lr}] + [{"params": [t], "lr": r} for t, r in extra.values()]
    learned = [syn] + [t for t, _ in extra.values()]
    opt = torch.optim.Adam(groups, lr=lr, betas=betas) if betas else torch.optim.SGD(groups, lr=lr, momentum=momentum)
    base_lrs = [g["lr"] for g in groups]
    gen = generator(seed)
    losses: list[float] = []
    start, per_iteration = 0, None
    state = None if checkpoint_dir is None else Path(checkpoint_dir) / STATE

    def iterate(it: int) -> torch.Tensor:
        loss = step(it, syn, gen)
        if not torch.isfinite(loss):
            raise LaddError(f"{description}: loss became {loss.item()} at iteration {it}: lower lr_img in the recipe")
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=learned)  # not into network weights (DC's net, MTT's start point): never used
        return loss

    with seeded(seed):
        if state is not None and resume:
            if not state.exists():
                raise LaddError(f"--resume: no checkpoint in {checkpoint_dir}; run once without --resume")
            tensors, meta = load_state(state, opt, gen, syn.device)
            with torch.no_grad():
                syn.copy_(tensors["syn"])
                for name, (t, _) in extra.items():
                    t.copy_(tensors[name])
            start, losses, per_iteration = int(meta["iteration"]), list(meta["losses"]), meta.get("flops_per_iteration")
        with progress.bar(description, iterations) as advance:
            advance(start)
            for it in range(start, iterations):
                with FlopCounterMode(display=False) if per_iteration is None else nullcontext() as counter:
                    loss = iterate(it)
                per_iteration = counter.get_total_flops() if per_iteration is None else per_iteration
                if cosine:
                    for g, base in zip(opt.param_groups, base_lrs):
                        g["lr"] = base * 0.5 * (1 + math.cos(math.pi * it / iterations))
                opt.step()
                if project is not None:
                    with torch.no_grad():
                        project(syn)
                losses.append(loss.item())
                if state is not None and ((it + 1) % every == 0 or it + 1 == iterations):
                    tensors = {"syn": syn.detach(), **{k: t.detach() for k, (t, _) in extra.items()}}
                    save_state(state, tensors, {"iteration": it + 1, "losses": losses, "flops_per_iteration": per_iteration}, opt, gen)
                advance(status=f"loss {losses[-1]:.4g}")
            if per_iteration is None and iterations > 0:  # a finished checkpoint from before ladd counted FLOPs: count one more, unapplied
                per_iteration = count_flops(iterate, iterations - 1)[1]
                opt.zero_grad(set_to_none=True)
    return Optimized(syn.detach(), losses, (per_iteration or 0) * iterations)
