"""DM — distribution matching (Zhao & Bilen, WACV 2023; VICO-UoE/DatasetCondensation main_DM.py).

Each iteration samples a fresh randomly initialized network (frozen) and, for every class, matches
the mean `embed` feature of a real batch and of the synthetic images under the same DSA
parameters: loss = Σ_c ‖mean φ(real_c) − mean φ(syn_c)‖².

Faster than the reference by construction, not by changing the objective: all classes go through
the network in one batched call (instance norm keeps samples independent), network weights need no
gradients, and the real branch — targets only, no autograd — runs in bfloat16 through one
`torch.compile`d graph that takes the weights as inputs, so each fresh network reuses it
(`real_precision`/`compile` turn this off; bf16 moves the class means by ~0.2%). The synthetic
branch, whose gradient is the update, stays float32. Deviation: one DSA op family is drawn per
iteration for all classes (each class still gets its own parameters); the reference draws the
family per class.

Under torchrun the classes go round-robin to the ranks (`dist.mine`): every rank draws the whole
iteration's randomness (network, real batches, DSA parameters) and computes only its classes' terms,
whose gradients touch only its classes' images; `optimize_images(split=True)` sums them, so every
rank takes one process's step.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call
from pydantic import BaseModel, ConfigDict, Field

from ladd.augment.dsa import DSA, strategy_for
from ladd.core import dist
from ladd.core.runtime import seeded
from ladd.core.limits import MAX_BATCH, MAX_PIXEL_LR, MAX_STEPS
from ladd.core.types import ImageSet, normalize, to_pixels
from ladd.cost import flops
from ladd.data.stream import gather
from ladd.images import IMAGE_METHODS, ImageRequest, check_ipc
from ladd.images.optimize import optimize_images
from ladd.images.random import random_images
from ladd.models import build_model


class DMParams(BaseModel):
    """Defaults: main_DM.py (CIFAR IPC 1/10/50): 20,000 iterations, lr_img 1.0, SGD momentum 0.5,
    256 real images per class, init from real images, DSA with all ops."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    iterations: int = Field(20000, ge=1, le=MAX_STEPS)
    lr_img: float = Field(1.0, gt=0, le=MAX_PIXEL_LR)
    momentum: float = Field(0.5, ge=0, le=1)
    batch_real: int = Field(256, ge=1, le=MAX_BATCH)
    init: Literal["real", "noise"] = "real"
    checkpoint_every: int = Field(100, ge=1, le=MAX_STEPS)
    real_chunk: int = Field(256, ge=1, le=MAX_BATCH)  # real images per forward call: bounds memory (256 was fastest on 2 cores)
    real_precision: Literal["bfloat16", "float32"] = "bfloat16"  # of the no-grad real-feature branch
    compile: bool = True  # torch.compile the real branch (a one-off ~20 s compile per process)


class _Embed(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


class RealFeatures:
    """`embed` of real images for any network of one architecture, without autograd, in the chosen
    precision; weights are call inputs, so one compiled graph serves every fresh network."""

    def __init__(self, template: nn.Module, dtype: torch.dtype, compile: bool):
        self.dtype = dtype
        self.module = _Embed(copy.deepcopy(template).to(dtype)).requires_grad_(False)
        self.fn = flops.compiled(self._call, dynamic=False) if compile else self._call

    def _call(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, params, (x,))

    @torch.no_grad()
    def __call__(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        params = {f"net.{k}": v.to(self.dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}
        return self.fn(params, x.to(self.dtype)).float()


def initial_images(req: ImageRequest, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized float synthetic images on the device: random real images, or Gaussian noise."""
    start = random_images(req)
    x = normalize(start.images.to(req.runtime.device), req.dataset.mean, req.dataset.std)
    if init == "noise":
        with seeded(req.seed):
            x = torch.randn_like(x)
    return x, start.labels.to(req.runtime.device)


def class_means(features: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    sums = torch.zeros(classes, features.shape[1], device=features.device, dtype=features.dtype).index_add_(0, labels, features)
    return sums / torch.bincount(labels, minlength=classes).clamp_min(1).unsqueeze(1).to(features.dtype)


def dm_objective(
    real_features: torch.Tensor, real_labels: torch.Tensor, syn_features: torch.Tensor, syn_labels: torch.Tensor, classes: int
) -> torch.Tensor:
    """Σ_c ‖mean φ(real_c) − mean φ(syn_c)‖²."""
    diff = class_means(real_features, real_labels, classes) - class_means(syn_features, syn_labels, classes)
    return (diff**2).sum()


@IMAGE_METHODS.register("dm")
def dm_images(req: ImageRequest) -> ImageSet:
    check_ipc(req.dataset, req.ipc)
    p = DMParams(**req.params)
    ds, device = req.dataset, req.runtime.device
    syn0, syn_labels = initial_images(req, p.init)
    by_class = [(ds.train.labels == c).nonzero().flatten() for c in range(ds.num_classes)]
    syn_of = [(syn_labels == c).nonzero().flatten() for c in range(ds.num_classes)]
    dsa = DSA(strategy_for(ds.name))
    c, h, w = ds.shape

    real_features = None

    def step(it: int, syn: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        nonlocal real_features
        with seeded(int(torch.randint(2**31, (1,), generator=gen))):
            net = build_model(req.model, channels=c, num_classes=ds.num_classes, im_size=(h, w)).to(device)
        net.requires_grad_(False)
        if real_features is None:
            real_features = RealFeatures(net, getattr(torch, p.real_precision), p.compile)
        picks = [m[torch.randperm(len(m), generator=gen)[: p.batch_real]] for m in by_class]
        params = dsa.sample(ds.num_classes, (h, w), gen)  # one siamese draw per class
        mine = list(dist.mine(ds.num_classes))  # every class's draws above, so the stream is one process's
        if not mine:
            return torch.zeros((), device=device)
        idx, rows = torch.cat([picks[k] for k in mine]), torch.cat([syn_of[k] for k in mine])
        real = torch.cat(
            [
                real_features(
                    net,
                    dsa.apply(normalize(gather(ds.train.images, chunk).to(device), ds.mean, ds.std), params.index(ds.train.labels[chunk])),
                )
                for chunk in idx.split(p.real_chunk)
            ]
        )
        syn_features = net.embed(dsa.apply(syn[rows], params.index(syn_labels[rows])))
        return dm_objective(real, ds.train.labels[idx].to(device), syn_features, syn_labels[rows], ds.num_classes)

    out = optimize_images(
        syn0,
        step,
        iterations=p.iterations,
        lr=p.lr_img,
        momentum=p.momentum,
        seed=req.seed,
        checkpoint_dir=req.checkpoint_dir,
        resume=req.resume,
        every=p.checkpoint_every,
        description=f"DM IPC {req.ipc}",
        split=True,
    )
    return ImageSet(to_pixels(out.images, ds.mean, ds.std, keep_float=req.float_images).cpu(), syn_labels.cpu(), flops=out.flops)
