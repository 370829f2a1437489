"""DC — dataset condensation by gradient matching (Zhao et al., ICLR 2021) and DSA — the same with
differentiable siamese augmentation (Zhao & Bilen, ICML 2021); VICO-UoE/DatasetCondensation main.py.

Each iteration starts a freshly initialized network. For `outer_loop` rounds: for every class,
the gradient of the CE loss on a real batch (detached) is matched to the gradient on that class's
synthetic images (differentiated through, `create_graph`), with the layer-wise distance below;
the images take one SGD step; then the network trains `inner_loop` epochs on the synthetic set.
DSA gives the real and synthetic batch of a class the same augmentation draw, and augments the
inner-loop training too.

Faster than the reference loop (same objective, same loops): the real-batch gradients and the
inner-loop training — most of the time at IPC ≥ 10 — run through a `torch.compile`d loss whose
weights are call inputs, so every fresh network reuses it (~1.4× on CPU: fused norm, activation and
pooling). Compiled reductions round differently from eager ones (~1e-4 relative in the gradients);
`compile = false` turns it off. The synthetic branch stays eager: its gradient is differentiated
again, and compiling it as a function (`torch.func.grad` under `torch.compile`, MTT's route)
measured no faster at 10 images per class.

Under torchrun the classes' matching terms go round-robin to the ranks (`dist.mine`); every rank
draws every class's real batch and DSA parameters, and `optimize_images(split=True)` sums the
image gradients, so all ranks hold the same images after each round and train the same network on
them in the inner loop (replicated: it is the same work on every rank).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.func import functional_call

from ladd.augment.dsa import DSA, strategy_for
from ladd.core import dist
from ladd.core.runtime import seeded
from ladd.core.limits import MAX_BATCH, MAX_LR, MAX_PIXEL_LR, MAX_STEPS, MAX_UNROLL
from ladd.core.types import ImageSet, normalize, to_pixels
from ladd.cost import flops
from ladd.data.stream import gather
from ladd.images import IMAGE_METHODS, ImageRequest, check_ipc
from ladd.images.dm import initial_images
from ladd.images.optimize import optimize_images
from ladd.models import build_model


class GradientMatchingParams(BaseModel):
    """Defaults: main.py — 1000 iterations, lr_img 0.1 (SGD momentum 0.5), lr_net 0.01, 256 real
    images per class, batch_train 256; outer/inner loops per IPC from utils.get_loops (the recipes
    carry the table). Init from real images (the DSA README's setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    iterations: int = Field(1000, ge=1, le=MAX_STEPS)
    lr_img: float = Field(0.1, gt=0, le=MAX_PIXEL_LR)
    momentum: float = Field(0.5, ge=0, le=1)
    lr_net: float = Field(0.01, gt=0, le=MAX_LR)
    batch_real: int = Field(256, ge=1, le=MAX_BATCH)
    batch_train: int = Field(256, ge=1, le=MAX_BATCH)
    outer_loop: int = Field(10, ge=1, le=MAX_UNROLL)
    inner_loop: int = Field(50, ge=0, le=MAX_UNROLL)
    init: Literal["real", "noise"] = "real"
    checkpoint_every: int = Field(10, ge=1, le=MAX_STEPS)
    compile: bool = True  # torch.compile real-batch gradients and inner-loop training (a one-off compile per process)


def layer_distance(g_syn: torch.Tensor, g_real: torch.Tensor) -> torch.Tensor:
    """DC's distance for one parameter: Σ over output units of (1 − cos) between gradient rows.
    1-D parameters (biases, norm scales) contribute 0, as in the reference."""
    if g_real.ndim == 1:
        return g_real.new_zeros(())
    a, b = g_syn.flatten(1), g_real.flatten(1)
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)).sum()


def match_loss(g_syn, g_real) -> torch.Tensor:
    return sum(layer_distance(s, r) for s, r in zip(g_syn, g_real))


class NetworkLoss:
    """Cross-entropy of any network of one architecture with its parameters and buffers as call
    inputs, so one compiled graph (forward and backward) serves every fresh network."""

    def __init__(self, template: nn.Module, compile: bool):
        self.module = copy.deepcopy(template)
        self.fn = flops.compiled(self._call) if compile else self._call  # a second batch size recompiles it dynamic

    def _call(self, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.module, state, (x,)), y)

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn({**dict(net.named_parameters()), **dict(net.named_buffers())}, x, y)


def _matching(req: ImageRequest, augment: bool) -> ImageSet:
    check_ipc(req.dataset, req.ipc)
    p = GradientMatchingParams(**req.params)
    ds, device = req.dataset, req.runtime.device
    syn0, syn_labels = initial_images(req, p.init)
    by_class = [(ds.train.labels == c).nonzero().flatten() for c in range(ds.num_classes)]
    syn_of = [(syn_labels == c).nonzero().flatten() for c in range(ds.num_classes)]
    dsa = DSA(strategy_for(ds.name)) if augment else None
    c, h, w = ds.shape
    net: nn.Module | None = None
    net_opt: torch.optim.Optimizer | None = None
    real_loss = train_loss = None  # one graph each: real batches and training batches differ in size

    def step(it: int, syn: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One outer round; a new network every `outer_loop` rounds (iterations × outer_loop rounds in all).
        Checkpoints fall on network boundaries, so a resume never needs a half-trained network."""
        nonlocal net, net_opt, real_loss, train_loss
        if it % p.outer_loop == 0:
            with seeded(int(torch.randint(2**31, (1,), generator=gen))):
                net = build_model(req.model, channels=c, num_classes=ds.num_classes, im_size=(h, w)).to(device)
            net_opt = torch.optim.SGD(net.parameters(), lr=p.lr_net)
            if real_loss is None:
                real_loss, train_loss = NetworkLoss(net, p.compile), NetworkLoss(net, p.compile)
        else:  # the previous round updated the images: train the network on them first (main.py order)
            _inner_epochs(net, net_opt, train_loss, syn.detach(), syn_labels, p, dsa, gen)
        params = list(net.parameters())
        net.train()
        loss = torch.zeros((), device=device)
        mine = set(dist.mine(ds.num_classes))
        for k, members in enumerate(by_class):
            pick = members[torch.randperm(len(members), generator=gen)[: p.batch_real]]
            draw = None if dsa is None else dsa.sample(1, (h, w), gen, shared=True)
            if k not in mine:  # another rank's class: its draws only, so the stream stays one process's
                continue
            real, own = normalize(gather(ds.train.images, pick).to(device), ds.mean, ds.std), syn[syn_of[k]]
            if dsa is not None:
                real, own = dsa.apply(real, draw), dsa.apply(own, draw)
            target = torch.full((len(real),), k, device=device)
            g_real = torch.autograd.grad(real_loss(net, real, target), params)
            g_syn = torch.autograd.grad(F.cross_entropy(net(own), target[: len(own)]), params, create_graph=True)
            loss = loss + match_loss(g_syn, g_real)
        return loss

    out = optimize_images(
        syn0,
        step,
        iterations=p.iterations * p.outer_loop,
        lr=p.lr_img,
        momentum=p.momentum,
        seed=req.seed,
        checkpoint_dir=req.checkpoint_dir,
        resume=req.resume,
        every=p.checkpoint_every * p.outer_loop,
        cycle=p.outer_loop,
        description=f"{'DSA' if augment else 'DC'} IPC {req.ipc}",
        split=True,
    )
    return ImageSet(to_pixels(out.images, ds.mean, ds.std, keep_float=req.float_images).cpu(), syn_labels.cpu(), flops=out.flops)


def _inner_epochs(net, opt, loss_of: NetworkLoss, syn, labels, p: GradientMatchingParams, dsa, gen) -> None:
    for _ in range(p.inner_loop):
        for idx in torch.randperm(len(syn), generator=gen).split(p.batch_train):
            idx = idx.to(syn.device)
            x = syn[idx] if dsa is None else dsa(syn[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss_of(net, x, labels[idx]).backward()
            opt.step()


@IMAGE_METHODS.register("dc")
def dc_images(req: ImageRequest) -> ImageSet:
    return _matching(req, augment=False)


@IMAGE_METHODS.register("dsa")
def dsa_images(req: ImageRequest) -> ImageSet:
    return _matching(req, augment=True)
