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

Under torchrun every rank runs the loop with the same generator draws and holds the same images;
rank 0 writes the checkpoints and every rank resumes from them. With `split`, a step computes only
this rank's share of the loss (DM's and DC's classes, `dist.mine`): gradients and the logged loss
are summed over the ranks, so every rank takes the one-process update — exactly, when the shares
touch disjoint pixels (the other ranks add zeros). Counted iterations run whole on every rank
(`dist.alone`), so the FLOPs are one process's, with no collective, however the step divides.
Independent *units* (a recover batch, an LPLD or LIC class) are the other layout: `run_units`
gives each to one rank, optimized there as one process with its own seed (`unit_seed`) and
checkpoint, and gathers them (`dist.in_order`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from ladd.core import dist, progress
from ladd.core.checkpoint import load_state, ranks_rng, restore_rank_rng, save_state
from ladd.core.errors import RunError
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
    split: bool = False,
) -> Optimized:
    """Optimize a float image tensor.

    `extra` maps names to (tensor, lr): other learned tensors (MTT's learning rate), optimized in
    place by the same SGD (own lr, same momentum) and checkpointed with the images. `betas` picks
    Adam instead of SGD; `cosine` anneals every lr as lr·½(1 + cos(π·it/iterations)); `project`
    runs on the images (no grad) after each update, e.g. to clip them to valid pixels; iteration
    `it` does the work of iteration `it % cycle` (for FLOPs); `split`: the step returns this
    rank's share of the loss (module docstring)."""
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
        shared = split and dist.active()  # not inside a counted iteration, which runs whole (`alone`)
        total = dist.all_sum(loss.detach().clone()) if shared else loss
        if not torch.isfinite(total):  # the global loss: every rank stops together
            raise RunError(f"{description}: loss became {total.item()} at iteration {it}: lower lr_img in the recipe")
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # a rank with no share of the loss returns a constant zero
            loss.backward(inputs=learned)  # not into network weights (DC's net, MTT's start point): never used
        if shared:
            for t in learned:
                if t.grad is None:
                    t.grad = torch.zeros_like(t)
                dist.all_sum(t.grad)
        return total

    def counted(it: int) -> tuple[torch.Tensor, int]:
        with dist.alone():
            return count_flops(iterate, it)

    with seeded(seed):
        if state is not None and resume and not state.exists():  # e.g. a requeue after a kill before the first checkpoint
            progress.log(f"{description}: --resume, but no checkpoint in {checkpoint_dir} yet: starting from iteration 0/{iterations}")
        elif state is not None and resume:
            tensors, meta = load_state(state, opt, gen, syn.device)
            restore_rank_rng(tensors, state)
            with torch.no_grad():
                syn.copy_(tensors["syn"])
                for name, (t, _) in extra.items():
                    t.copy_(tensors[name])
            start = int(meta["iteration"])  # the losses: a tensor (a JSON list in the header of older states)
            losses = tensors["losses"].tolist() if "losses" in tensors else list(meta["losses"])
            per_position = meta["flops_per_position"]
            progress.log(f"{description}: resuming from {state} (iteration {start}/{iterations})")
        with progress.bar(description, iterations) as advance:
            advance(start)
            for it in range(start, iterations):
                if per_position[it % cycle] is None:  # first time at this point of the cycle: count it
                    loss, per_position[it % cycle] = counted(it)
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
                    rngs = ranks_rng()  # every rank, at the same iterations
                    if dist.main():
                        logged = torch.tensor(losses, dtype=torch.float64)  # not in the header: safetensors caps it at 100 MB
                        tensors = {"syn": syn.detach(), **{k: t.detach() for k, (t, _) in extra.items()}, "losses": logged, **rngs}
                        save_state(state, tensors, {"iteration": it + 1, "flops_per_position": per_position}, opt, gen, syn.device)
                        progress.log(f"{description}: checkpoint: iteration {it + 1}/{iterations} -> {state}")
                advance(status=f"loss {losses[-1]:.4g}")
    return Optimized(syn.detach(), losses, sum(per_position[it % cycle] for it in range(iterations)))


def unit_seed(seed: int, unit: int, role: str) -> int:
    """A unit's seed for `role`, independent of how units are spread over ranks."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{unit}:{role}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def run_units(count: int, run: Callable[[int], Optimized], pixels: Callable[[torch.Tensor], torch.Tensor]) -> list[Optimized]:
    """Every unit's result, in unit order on every rank: each unit is `run` on one rank as one
    process (`dist.alone`: it checkpoints its own folder) and its images become host pixels by `pixels`."""
    done = {}
    for u in dist.mine(count):
        with dist.alone():
            out = run(u)
        done[u] = replace(out, images=pixels(out.images.cpu()))
    return dist.in_order(done, count)
