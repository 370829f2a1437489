"""The one loop for learned images: SGD (or AdamW) on the synthetic pixels, checkpointed and resumable.

A method supplies `step(iteration, syn, gen) -> loss`; the loop updates the images, shows
progress, and every `every` iterations saves images, optimizer and generator state in one file,
so `resume=True` continues with the same result as an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch

from ladd.core import progress
from ladd.core.checkpoint import load_state, save_state
from ladd.core.errors import LaddError
from ladd.core.runtime import generator, seeded

STATE = "images_state.safetensors"


def optimize_images(
    syn: torch.Tensor,
    step: Callable[[int, torch.Tensor, torch.Generator], torch.Tensor],
    *,
    iterations: int,
    lr: float,
    momentum: float,
    seed: int,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    every: int = 100,
    description: str = "distill",
    extra: dict[str, tuple[torch.Tensor, float]] | None = None,
    optimizer: Literal["sgd", "adamw"] = "sgd",
) -> tuple[torch.Tensor, list[float]]:
    """Optimize a float image tensor; returns (images, loss per iteration).

    `extra` maps names to (tensor, lr): other learned tensors (MTT's learning rate), optimized in
    place by the same SGD (own lr, same momentum) and checkpointed with the images. `adamw`
    (LIC's compensation, as LINs-lab/CIM condense.py: AdamW, no weight decay) ignores `momentum`."""
    syn = syn.detach().clone().requires_grad_(True)
    extra = extra or {}
    groups = [{"params": [syn], "lr": lr}] + [{"params": [t], "lr": r} for t, r in extra.values()]
    learned = [syn] + [t for t, _ in extra.values()]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    gen = generator(seed)
    losses: list[float] = []
    start = 0
    state = None if checkpoint_dir is None else Path(checkpoint_dir) / STATE
    with seeded(seed):
        if state is not None and resume:
            if not state.exists():
                raise LaddError(f"--resume: no checkpoint in {checkpoint_dir}; run once without --resume")
            tensors, meta = load_state(state, opt, gen, syn.device)
            with torch.no_grad():
                syn.copy_(tensors["syn"])
                for name, (t, _) in extra.items():
                    t.copy_(tensors[name])
            start, losses = int(meta["iteration"]), list(meta["losses"])
        with progress.bar(description, iterations) as advance:
            advance(start)
            for it in range(start, iterations):
                loss = step(it, syn, gen)
                if not torch.isfinite(loss):
                    raise LaddError(f"{description}: loss became {loss.item()} at iteration {it}: lower lr_img in the recipe")
                opt.zero_grad(set_to_none=True)
                loss.backward(inputs=learned)  # not into network weights (DC's net, MTT's start point): never used
                opt.step()
                losses.append(loss.item())
                if state is not None and ((it + 1) % every == 0 or it + 1 == iterations):
                    tensors = {"syn": syn.detach(), **{k: t.detach() for k, (t, _) in extra.items()}}
                    save_state(state, tensors, {"iteration": it + 1, "losses": losses}, opt, gen)
                advance(status=f"loss {losses[-1]:.4g}")
    return syn.detach(), losses
