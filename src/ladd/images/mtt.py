"""MTT — matching training trajectories (Cazenavette et al., CVPR 2022; GeorgeCazenavette/mtt-distillation).

Experts are ladd experts (`ladd experts` trains them into the cache, or with `--out DIR` into a
folder that MTT then reads with `--buffer DIR`): SGD without momentum or weight decay, DSA, a
checkpoint every epoch, which is exactly buffer.py's trajectory. Each iteration picks an expert
and a start epoch t < max_start_epoch, runs `syn_steps` SGD steps of a student from θ*_t on
(augmented mini-batches of) the synthetic images with a learnable learning rate, and minimizes
‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖². Images and the learning rate are learned; the learned
rate is stored with the artifact and evaluation uses it.

Memory: the unrolled graph holds `syn_steps` student steps on `batch_syn` images each; a smaller
`batch_syn` bounds memory (the reference's known complaint is memory ∝ syn_steps × the full set).

Speed: each student step's gradient is `torch.func.grad` of the loss under `torch.compile`
(`StudentGradient`). Autograd then sees a first-order compiled graph whose outputs are the
gradients, and the backward through the unrolled steps, which is most of the cost, runs through
fused kernels instead of eager double backward.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.func import functional_call

from ladd.augment.dsa import DSA, strategy_for
from ladd.core.checkpoint import check_weights
from ladd.core.errors import ArtifactError, ConfigError, RunError
from ladd.core.io import load_safetensors
from ladd.core.limits import MAX_BATCH, MAX_COUNT, MAX_EXPERTS, MAX_LR, MAX_PIXEL_LR, MAX_STEPS, MAX_UNROLL
from ladd.core.types import ImageSet, to_pixels
from ladd.cost import flops
from ladd.experts import ExpertConfig, build_for, cache_dir, check_matches, in_buffer, read_info
from ladd.images import IMAGE_METHODS, ImageRequest, check_ipc
from ladd.images.dm import initial_images
from ladd.images.optimize import optimize_images
from ladd.train.loop import checkpoint_path


class MTTParams(BaseModel):
    """Defaults: distill.py (syn_steps 20, expert_epochs 3, max_start_epoch 25, lr_img 1000,
    lr_lr 1e-5, lr_teacher 0.01 as the initial student lr, 5000 iterations) and buffer.py
    (100 experts × 50 epochs). Per-setting values live in the recipes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    iterations: int = Field(5000, ge=1, le=MAX_STEPS)
    syn_steps: int = Field(20, ge=1, le=MAX_UNROLL)
    expert_epochs: int = Field(3, ge=1, le=MAX_COUNT)  # M: how far ahead of the start the student is matched
    max_start_epoch: int = Field(25, ge=1, le=MAX_COUNT)
    lr_img: float = Field(1000.0, gt=0, le=MAX_PIXEL_LR)
    lr_lr: float = Field(1e-5, gt=0, le=MAX_LR)
    lr_teacher: float = Field(0.01, gt=0, le=MAX_LR)  # initial value of the learned student lr
    momentum: float = Field(0.5, ge=0, le=1)
    batch_syn: int | None = Field(None, ge=1, le=MAX_BATCH)  # images per student step; None = the whole set
    num_experts: int = Field(100, ge=1, le=MAX_EXPERTS)
    expert_train_epochs: int = Field(50, ge=1, le=MAX_COUNT)
    checkpoint_every: int = Field(100, ge=1, le=MAX_STEPS)
    compile: bool = True  # compile the student gradient (StudentGradient; a one-off compile per batch size)
    # learn global soft labels with the images (TESLA/DATM): logits initialized from a buffer expert at
    # max_start_epoch, the student's loss soft cross-entropy to their softmax; DATM's lr_y is 2 (IPC 10, 50), 5 (IPC 1)
    learn_labels: bool = False
    lr_label: float = Field(2.0, gt=0, le=MAX_PIXEL_LR)


class StudentGradient:
    """∇θ CE(f_θ(x), y) for the student network, a function of θ and x that autograd differentiates
    again. Compiled, it is one graph for every step and iteration. Inductor's channels-last layout
    for convolutions is off: it made the per-instance norm's reductions strided, and the graph
    slower than eager on CPU. Batch norm keeps no running statistics here: `torch.func.grad`
    refuses the in-place update, and a training-mode trajectory never reads them."""

    def __init__(self, template: nn.Module, compile: bool):
        self.module = torch.func.replace_all_batch_norm_modules_(copy.deepcopy(template))
        self.buffers = dict(self.module.named_buffers())
        grad = torch.func.grad(self._loss)
        self.fn = flops.compiled(grad, dynamic=False, options={"layout_optimization": False}) if compile else grad

    def _loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # y: class indices, or probabilities (learned soft labels: soft cross-entropy, DATM's SoftCrossEntropy)
        return F.cross_entropy(functional_call(self.module, {**params, **self.buffers}, (x,)), y)

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fn(params, x, y)


def trajectory_loss(
    gradient: StudentGradient,
    start: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    syn: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    batches: list[torch.Tensor],
    augment: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Unroll one SGD step per index batch from `start`; normalized distance to `target`. `labels`
    are class indices or, when learned, probabilities (the gradient then reaches them too)."""
    names = [n for n, _ in gradient.module.named_parameters()]
    params = {n: start[n].detach().clone().requires_grad_(True) for n in names}
    for idx in batches:
        grads = gradient(params, augment(syn[idx]), labels[idx])
        params = {n: params[n] - syn_lr * grads[n] for n in names}
    num = sum(((params[n] - target[n]) ** 2).sum() for n in names)
    den = sum(((start[n] - target[n]) ** 2).sum() for n in names)
    return num / den


def buffer_dirs(req: ImageRequest, p: MTTParams) -> list[Path]:
    """The expert trajectories MTT needs, from `req.buffer` or the cache; refuses with the command that makes them."""
    if req.buffer is not None:
        return _explicit_buffer(req, p)
    dirs = []
    for seed in range(p.num_experts):
        d = cache_dir(req.dataset, ExpertConfig(model=req.model, epochs=p.expert_train_epochs, seed=seed))
        if not read_info(d).get("complete"):
            raise ArtifactError(
                f"MTT needs {p.num_experts} expert trajectories of {req.model} on {req.dataset.name} "
                f"({p.expert_train_epochs} epochs each); expert {seed} is missing. Make them with: "
                f"{_experts_command(req, p)}"
            )
        dirs.append(d)
    return dirs


def _experts_command(req: ImageRequest, p: MTTParams, out: Path | str | None = None, epochs: int | None = None) -> str:
    return (
        f"ladd experts --dataset {req.dataset.name} --model {req.model} --num-experts {p.num_experts} "
        f"--epochs {epochs or p.expert_train_epochs}" + ("" if out is None else f" --out {out}")
    )


def _explicit_buffer(req: ImageRequest, p: MTTParams) -> list[Path]:
    """The first `num_experts` experts of the buffer folder, each checked against the dataset (class
    order, shape, normalization), the distillation model and the epochs the recipe reaches into."""
    root, needed = Path(req.buffer).expanduser(), p.max_start_epoch + p.expert_epochs
    if not root.is_dir():
        raise ArtifactError(f"--buffer {root} is not a folder: make the expert trajectories with {_experts_command(req, p, root)}")
    dirs = [in_buffer(root, seed) for seed in range(p.num_experts)]
    epochs = None  # the finished experts' epochs: experts added to the buffer must match them
    ready = 0
    for d in dirs:
        info = read_info(d)
        if not info.get("complete"):
            continue
        check_matches(info, req.dataset, d)
        cfg = info["config"]
        if cfg["model"] != req.model:
            raise ConfigError(
                f"expert {d} is a {cfg['model']}, but MTT distills with {req.model}: pass --model "
                f"{cfg['model']} or make a {req.model} buffer with {_experts_command(req, p, 'NEW_DIR')}"
            )
        if cfg["epochs"] < needed:
            raise ArtifactError(
                f"expert {d} was trained for {cfg['epochs']} epochs, but the recipe matches up to epoch {needed} "
                f"(max_start_epoch + expert_epochs): make a buffer with {_experts_command(req, p, 'NEW_DIR')}"
            )
        epochs, ready = cfg["epochs"], ready + 1
    if ready < p.num_experts:
        raise ArtifactError(
            f"--buffer {root} holds {ready} finished experts, the recipe needs num_experts {p.num_experts}: "
            f"add them with {_experts_command(req, p, root, epochs)} (finished ones are reused)"
        )
    return dirs


@IMAGE_METHODS.register("mtt")
def mtt_images(req: ImageRequest) -> ImageSet:
    check_ipc(req.dataset, req.ipc)
    p = MTTParams(**req.params)
    if p.max_start_epoch + p.expert_epochs > p.expert_train_epochs:
        raise ConfigError(
            f"max_start_epoch {p.max_start_epoch} + expert_epochs {p.expert_epochs} exceeds the "
            f"{p.expert_train_epochs} epochs the experts were trained for: lower them in the recipe"
        )
    dirs = buffer_dirs(req, p)
    ds, device = req.dataset, req.runtime.device
    syn0, labels = initial_images(req, "real")
    net = build_for(ds, req.model, 0).to(device)
    gradient = StudentGradient(net, p.compile)
    dsa = DSA(strategy_for(ds.name))
    syn_lr = torch.tensor(p.lr_teacher, device=device, requires_grad=True)
    batch = p.batch_syn or len(syn0)
    extra = {"syn_lr": (syn_lr, p.lr_lr)}
    if p.learn_labels:
        logits = _initial_logits(net, dirs[0], p.max_start_epoch, syn0, device).requires_grad_(True)
        extra["label_logits"] = (logits, p.lr_label)

    checked: set[Path] = set()  # checkpoints whose names and shapes fit the network (files do not change during a run)

    def step(it: int, syn: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        expert = dirs[int(torch.randint(len(dirs), (1,), generator=gen))]
        t = int(torch.randint(p.max_start_epoch, (1,), generator=gen))
        paths = [checkpoint_path(expert, e) for e in (t, t + p.expert_epochs)]
        start, target = (load_safetensors(q, device=str(device)) for q in paths)
        for q, state in zip(paths, (start, target)):
            if q not in checked:
                check_weights(net, state, q)  # one line, not a KeyError in the unroll
                checked.add(q)
        batches = [torch.randperm(len(syn), generator=gen)[:batch].to(device) for _ in range(p.syn_steps)]
        targets = extra["label_logits"][0].softmax(-1) if p.learn_labels else labels
        return trajectory_loss(gradient, start, target, syn, targets, syn_lr, batches, lambda x: dsa(x, gen))

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
        description=f"MTT IPC {req.ipc}",
        extra=extra,
    )
    info = {"lr": float(syn_lr.detach()), "final_loss": out.losses[-1]}
    if info["lr"] <= 0:  # students cannot train at it; the reference has no guard either
        raise RunError(
            f"MTT's learned student lr ended at {info['lr']:.3g} <= 0: lower lr_lr (now {p.lr_lr:g}) in the recipe "
            "or with --param lr_lr=..."
        )
    # the expert buffer exists only for MTT: its training is part of what the images cost
    buffer = flops.training(net, ds.shape, sum(read_info(d)["samples_seen"] for d in dirs))
    soft = extra["label_logits"][0].detach().softmax(-1).cpu() if p.learn_labels else None
    pixels = to_pixels(out.images, ds.mean, ds.std, keep_float=req.float_images).cpu()
    return ImageSet(pixels, labels.cpu(), info, flops=buffer + out.flops, soft=soft)


def _initial_logits(net: nn.Module, expert: Path, epoch: int, syn: torch.Tensor, device) -> torch.Tensor:
    """Learned labels start as an expert's logits on the initial images (DATM): the buffer's first
    expert at max_start_epoch, where the trajectories the images match begin."""
    state = load_safetensors(checkpoint_path(expert, epoch), device=str(device))
    check_weights(net, state, checkpoint_path(expert, epoch))
    model = copy.deepcopy(net)
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        return model.eval()(syn).detach().clone()
