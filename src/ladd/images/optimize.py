"""The one loop for learned images: SGD (or Adam) on the synthetic pixels, checkpointed and resumable.

A method supplies `step(iteration, syn, gen) -> loss`; the loop updates the images, shows
progress, and every `every` iterations saves images, optimizer and generator state in one file,
so `resume=True` continues with the same result as an uninterrupted run (and starts afresh when
nothing was saved yet: a requeued job killed before its first checkpoint); each checkpoint
written and each resume is logged on stderr. SRe²L/LPLD recover uses the Adam + cosine-lr +
pixel-clipping options. FLOPs (step + backward) are counted for one
cycle of iterations and kept in the checkpoint: iterations repeat their work every `cycle` (1 for
most methods; DC's `outer_loop` rounds of one network, whose later rounds also train it), so the
loop's cost is known however often it was interrupted, without counting every iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

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
    flops: int  # the whole loop: step + backward of every iteration, from one counted cycle


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
    cycle: int = 1,
) -> Optimized:
    """Optimize a float image tensor.

    `extra` maps names to (tensor, lr): other learned tensors (MTT's learning rate), optimized in
    place by the same SGD (own lr, same momentum) and checkpointed with the images. `betas` picks
    Adam instead of SGD; `cosine` anneals every lr as lr·½(1 + cos(π·it/iterations)); `project`
    runs on the images (no grad) after each update, e.g. to clip them to valid pixels; iteration
    `it` does the work of iteration `it % cycle` (for FLOPs)."""
    syn = syn.detach().clone().requires_grad_(True)
    extra = extra or {}
    groups = [{"params": [syn], "lr": lr}] + [{"params": [t], "lr": r} for t, r in extra.values()]
    learned = [syn] + [t for t, _ in extra.values()]
    opt = torch.optim.Adam(groups, lr=lr, betas=betas) if betas else torch.optim.SGD(groups, lr=lr, momentum=momentum)
    base_lrs = [g["lr"] for g in groups]
    gen = generator(seed)
    losses: list[float] = []
    start, per_position = 0, [None] * cycle  # FLOPs of iteration it % cycle
    state = None if checkpoint_dir is None else Path(checkpoint_dir) / STATE

    def iterate(it: int) -> torch.Tensor:
        loss = step(it, syn, gen)
        if not torch.isfinite(loss):
            raise LaddError(f"{description}: loss became {loss.item()} at iteration {it}: lower lr_img in the recipe")
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=learned)  # not into network weights (DC's net, MTT's start point): never used
        return loss

    with seeded(seed):
        if state is not None and resume and not state.exists():  # e.g. a requeue after a kill before the first checkpoint
            progress.log(f"{description}: --resume, but no checkpoint in {checkpoint_dir} yet: starting from iteration 0/{iterations}")
        elif state is not None and resume:
            tensors, meta = load_state(state, opt, gen, syn.device)
            with torch.no_grad():
                syn.copy_(tensors["syn"])
                for name, (t, _) in extra.items():
                    t.copy_(tensors[name])
            start, losses = int(meta["iteration"]), list(meta["losses"])
            per_position = meta.get("flops_per_position", per_position)
            progress.log(f"{description}: resuming from {state} (iteration {start}/{iterations})")
        with progress.bar(description, iterations) as advance:
            advance(start)
            for it in range(start, iterations):
                if per_position[it % cycle] is None:  # first time at this point of the cycle: count it
                    loss, per_position[it % cycle] = count_flops(iterate, it)
                else:
                    loss = iterate(it)
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
                    save_state(state, tensors, {"iteration": it + 1, "losses": losses, "flops_per_position": per_position}, opt, gen)
                    progress.log(f"{description}: checkpoint: iteration {it + 1}/{iterations} -> {state}")
                advance(status=f"loss {losses[-1]:.4g}")
            if any(per_position[it % cycle] is None for it in range(iterations)):
                # a finished checkpoint from before ladd counted FLOPs: run the last cycle again, counted, unapplied
                for it in range(max(0, iterations - cycle), iterations):
                    per_position[it % cycle] = count_flops(iterate, it)[1]
                opt.zero_grad(set_to_none=True)
    return Optimized(syn.detach(), losses, sum(per_position[it % cycle] for it in range(iterations)))
