"""The one trainer: labelers, experts and evaluation students all train here.

Data stay resident on the device (distilled sets are small; source sets are uint8) and are
normalized and augmented a batch at a time. A step sums the named loss terms; each term's mean
loss and the number of inputs it forwarded are logged, so FLOPs follow from samples seen.

The host never waits for the device inside an epoch: the loss is summed on the device and checked
for NaN/inf once per epoch (or every `Speed.check_every` steps, and before a fractional checkpoint),
and batch indices are moved once per epoch. How the network computes (precision, torch.compile,
channels-last, deterministic kernels) is the runtime's `Speed`; the defaults are the plain fp32 path.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ladd.augment.dsa import DSA
from ladd.core import dist, progress
from ladd.core.checkpoint import load_state, ranks_rng, restore_rank_rng, restore_weights, save_state, state_meta
from ladd.core.errors import ArtifactError, Diverged
from ladd.core.logs import logger
from ladd.core.io import save_tensors
from ladd.core.runtime import Runtime, generator, seeded
from ladd.core.types import normalize
from ladd.data import stream
from ladd.cost import flops
from ladd.train.terms import Batch, LearnedWeights, Term


class Optimization(BaseModel):
    """How a network is optimized: the fields the trainer's `Recipe` and the evaluation protocols
    (`ladd.eval.protocols.Protocol`) share, declared once."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(300, ge=1)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(256, ge=1)
    milestones: tuple[float, ...] = (0.5,)  # "step": fractions of the epochs after which lr × gamma; () = constant
    gamma: float = Field(0.1, gt=0, le=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    schedule: Literal["step", "cosine", "warmup-cosine"] = "step"  # "step" = × gamma at each milestone
    warmup: float = Field(0.5, ge=0, lt=1)  # warmup-cosine: fraction of epochs warming up
    ema: float | None = Field(None, gt=0, lt=1)  # β of an EMA of the weights that replaces them at the end

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < m <= 1 for m in value) or list(value) != sorted(value):
            raise ValueError(f"milestones {list(value)} must be increasing fractions of the epochs in (0, 1]")
        return value


class Recipe(Optimization):
    """Optimizer, schedule and augmentation of one training run. Defaults follow the DC/DSA/DM
    evaluation recipe (DatasetCondensation utils.evaluate_synset): SGD 0.01, momentum 0.9, wd 5e-4,
    batch 256, DSA augmentation, one ×0.1 decay. Here a decay applies from epoch
    int(epochs·milestone) on and keeps the momentum buffers; the reference trains epochs+1 epochs,
    decays at epochs//2+1 and rebuilds its optimizer. `optimizer="adamw"` + `schedule="cosine"` is
    the SRe²L student (VILA-Lab/SRe2L@8d00cba validate/train_FKD.py: AdamW, lr 1e-3, wd 0.01,
    cosine per epoch).

    The other evaluation protocols (ladd/eval/protocols/*.toml) set `optimizer` (AdamW for the
    FKD-style relabel methods), `schedule` ("warmup-cosine" = GLaD's linear warmup from ~0 over
    the first `warmup` fraction of epochs, then cosine to 0; "cosine" = cosine from the start) and
    `ema` (GLaD tests an exponential moving average of the weights, β 0.995, updated once per
    epoch with a warm-up of its decay: `_Ema`)."""

    dsa: str | None = None  # DSA strategy string; None = no augmentation
    # "learned": the terms are summed with learned weights (`ladd.train.terms.LearnedWeights`), optimized with the network
    term_weights: Literal["fixed", "learned"] = "fixed"

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        if self.schedule == "warmup-cosine":
            warm = int(self.epochs * self.warmup)
            if epoch < warm:
                return self.lr * (epoch + 1) / (warm + 1)
            return self.lr * 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, self.epochs - warm)))
        passed = sum(1 for m in self.milestones if 0 < int(self.epochs * m) <= epoch)
        return self.lr * self.gamma**passed

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


@dataclass(frozen=True)
class TrainData:
    """What a trainer reads: uint8 images, hard labels, optional soft/dense labels, normalization."""

    images: torch.Tensor
    hard: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    soft: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    geometry: tuple[int, float] | None = None
    replay: Any = None  # a stored relabel to replay (`ladd.labels.replay.Replay`): epochs visit its positions

    def to(self, device: torch.device) -> "TrainData":
        def move(t):
            return None if t is None else t.to(device)

        images = self.images if stream.stored(self.images) else move(self.images)  # a stored split is read by batch, never moved whole
        return TrainData(
            images,
            move(self.hard),
            self.mean,
            self.std,
            move(self.soft),
            move(self.dense),
            self.geometry,
            self.replay,
        )


@dataclass
class TrainLog:
    samples: dict[str, int] = field(default_factory=dict)  # inputs forwarded per term
    epoch_loss: list[float] = field(default_factory=list)
    term_weights: dict[str, float] | None = None  # learned term weights at the end (recipe.term_weights "learned")


def train(
    model: nn.Module,
    data: TrainData,
    terms: dict[str, Term],
    recipe: Recipe,
    *,
    seed: int,
    runtime: Runtime,
    description: str = "train",
    checkpoint_dir: Path | None = None,
    saves_per_epoch: int = 1,
    save_every: int = 1,
    rolling: bool = False,
    after_epoch: Callable[[int, nn.Module, TrainLog], None] | None = None,
) -> TrainLog:
    """Train `model` in place. With `checkpoint_dir`, weights are saved after every epoch
    (`epoch_000` = initialization) and an interrupted run resumes from the last one with the
    same result as an uninterrupted run (optimizer, generator and RNG states, and fp16's loss scale,
    are saved too).
    `saves_per_epoch` f > 1 also saves weights at each 1/f of an epoch (`epoch_002.500`): the
    fine-grained early checkpoints soft-label experts are chosen from. `save_every` k saves every
    k-th epoch (and the last) instead; `rolling` keeps only the newest weights and logs at debug
    level (evaluation students, whose checkpoints only serve a resume), and also saves at the end
    of any epoch ROLLING_EVERY_S after the last save, so a kill of an hours-long student loses
    minutes, not a k-th of its epochs (when a checkpoint is written never changes the result). An EMA of the weights is
    saved with the state, so an EMA student resumes exactly too. `after_epoch(epochs done,
    model, log)` runs after every epoch (e.g. to record an accuracy-over-FLOPs curve); it sees the
    weights that would be tested if training stopped there (the EMA's, with one), and the model is
    back in training mode afterwards. A loss that becomes NaN or
    infinite raises `Diverged` at the next finiteness check (see the module docstring). With
    `recipe.term_weights == "learned"` the terms' log-variances train with the network (no weight
    decay) and are saved with the state.

    Under torchrun (`dist.active()`) the ranks train one network with DistributedDataParallel:
    every rank draws the same permutation and augmentation parameters as one process and
    forwards its contiguous share of each global batch (batch_size is the global batch), its loss
    weighted so the averaged gradient is the global batch's mean; rank 0 writes the checkpoints.
    The result equals one process's up to float summation order where the network has no
    BatchNorm (BatchNorm layers normalize with each rank's share, as the references train
    without SyncBN)."""
    data = data.to(runtime.device)
    model.to(runtime.device)
    ddp = dist.active()
    wrapped = _ddp(model, runtime) if ddp else model
    network = _network(wrapped, runtime)
    scaler = runtime.scaler()
    check_every = runtime.speed.check_every
    gen = generator(seed)
    replay = None if data.replay is None else data.replay.for_seed(seed)
    dsa = DSA(recipe.dsa) if recipe.dsa else None
    weighting = LearnedWeights(tuple(terms)).to(runtime.device) if recipe.term_weights == "learned" else None
    groups = [{"params": list(model.parameters())}]
    if weighting is not None:
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    opt = recipe.make_optimizer(groups)
    ema = _Ema(model, recipe.ema) if recipe.ema is not None else None
    extra = _state_tensors(ema, weighting)
    log = TrainLog(samples={name: 0 for name in terms})
    start_epoch = 0
    n = data.images.shape[0]
    with seeded(seed), runtime.settings():
        if checkpoint_dir is not None:
            start_epoch = _resume(checkpoint_dir, model, opt, gen, log, description, recipe.epochs, extra, scaler)
            dist.barrier()  # every rank has read the state before rank 0 writes
            if start_epoch == 0:
                _save(checkpoint_dir, 0, model, opt, gen, log, description, recipe.epochs, extra, rolling, scaler)
        saved_at = time.monotonic()
        with progress.bar(description, recipe.epochs) as advance:
            advance(start_epoch)
            for epoch in range(start_epoch, recipe.epochs):
                for group in opt.param_groups:
                    group["lr"] = recipe.lr_at(epoch)
                model.train()
                # float64 on the device: the same sum of the float32 step losses as adding them on the host
                total, steps = torch.zeros((), dtype=torch.float64, device=runtime.device), 0
                seen = dict.fromkeys(terms, 0)
                # a replayed relabel visits stored positions (image, augmentation, label) instead of images
                if replay is not None:
                    batches = replay.batches(epoch, gen, recipe.batch_size)
                else:  # drawn on the CPU generator, moved once per epoch
                    batches = runtime.put(torch.randperm(n, generator=gen)).split(recipe.batch_size)
                fractions = _fraction_steps(len(batches), saves_per_epoch) if checkpoint_dir is not None else {}
                # the pixels of each batch, on the device: indexed in place (in memory) or read ahead (a stored split)
                sizes = [len(b) for b in batches]
                shares = [dist.part(size) for size in sizes]
                owned = [s.stop - s.start for s in shares]
                # fewer rows than ranks: a rank without any forwards the batch's first row, weighted 0, so it
                # takes part in DDP's gradient all-reduce and draws the parameters every rank draws
                shares = [s if own else slice(0, 1) for s, own in zip(shares, owned)]
                batches = [b[s] for b, s in zip(batches, shares)]  # under DDP this rank's share of each global batch
                rows = batches if replay is None else [replay.image_index(b) for b in batches]  # image index of each position
                pixels = stream.batches(data.images, rows, runtime.device)
                for position, idx, share, size, own in zip(batches, rows, shares, sizes, owned):
                    stored = None
                    if replay is not None:
                        stored, idx = position, idx.to(runtime.device, non_blocking=True)
                    x = normalize(next(pixels), data.mean, data.std)
                    parts = _micro_batches(x.shape[0], runtime.speed.micro_batch)
                    drawn = gen.get_state() if len(parts) > 1 else None  # every part draws what the whole batch draws
                    opt.zero_grad(set_to_none=True)
                    loss = torch.zeros((), device=runtime.device)
                    for a, b in parts:
                        if drawn is not None:
                            gen.set_state(drawn)
                        # DDP all-reduces the gradients once per step, in the last part's backward (its forward decides)
                        with wrapped.no_sync() if ddp and b < x.shape[0] else contextlib.nullcontext():
                            # this part's rows of the global batch: it draws for all of them and applies its own
                            span = (share.start + a, share.start + b, size) if ddp or drawn is not None else None
                            batch = Batch(
                                x=x[a:b],
                                hard=data.hard[idx[a:b]],
                                soft=None if data.soft is None else data.soft[idx[a:b]],
                                dense=None if data.dense is None else data.dense[idx[a:b]],
                                geometry=data.geometry,
                                augment=_augmenter(dsa, span),
                                gen=gen,
                                replay=replay,
                                stored=None if stored is None else stored[a:b],
                                rows=span,
                            )
                            losses = []
                            for name, term in terms.items():
                                term_loss, forwarded = term(network, batch)
                                losses.append(term_loss)
                                seen[name] += forwarded if own else 0
                            part = weighting(losses) if weighting is not None else sum(losses, torch.zeros((), device=runtime.device))
                            # the part's share of the global batch's mean (under DDP, which averages over ranks, times the
                            # ranks; 0 for a stand-in row)
                            part = part * ((b - a) * (dist.world() if ddp else 1) / size if own else 0.0)
                            (part if scaler is None else scaler.scale(part)).backward()
                        loss = loss + part.detach()
                    if ddp and weighting is not None:  # DDP averages the network's gradients only
                        for p in weighting.parameters():
                            p.grad = dist.all_sum(p.grad) / dist.world()
                    if scaler is None:
                        opt.step()
                    else:  # fp16: scaled gradients; a step whose gradients overflowed is skipped
                        scaler.step(opt)
                        scaler.update()
                    total, steps = total + loss.detach(), steps + 1
                    if steps in fractions or (check_every and steps % check_every == 0):
                        # never checkpoint NaN weights; under DDP every rank sees the sum, so all stop together
                        _finite(dist.all_sum(total.clone()) if ddp else total, description, epoch, steps)
                    if steps in fractions and dist.main():
                        save_tensors(checkpoint_path(checkpoint_dir, epoch + fractions[steps]), model.state_dict())
                if ddp:  # the global batch's loss and every rank's forwarded inputs
                    counts = torch.tensor(list(seen.values()), dtype=torch.float64, device=runtime.device)
                    total = dist.all_sum(total) / dist.world()
                    seen = dict(zip(seen, (int(c) for c in dist.all_sum(counts).tolist())))
                for name, count in seen.items():
                    log.samples[name] += count
                mean_loss = _finite(total, description, epoch, steps) / steps
                log.epoch_loss.append(mean_loss)
                if ema is not None:
                    ema.update(epoch + 1)
                overdue = rolling and time.monotonic() - saved_at >= ROLLING_EVERY_S
                if ddp and rolling:
                    overdue = dist.broadcast(overdue)  # rank 0's clock: every rank takes part in the save
                if checkpoint_dir is not None and ((epoch + 1) % save_every == 0 or epoch + 1 == recipe.epochs or overdue):
                    _save(checkpoint_dir, epoch + 1, model, opt, gen, log, description, recipe.epochs, extra, rolling, scaler)
                    saved_at = time.monotonic()
                if after_epoch is not None:  # the weights that would be tested if training stopped here
                    after_epoch(epoch + 1, model if ema is None else ema.averaged(model), log)
                advance(status=f"loss {mean_loss:.3f}")
    if ema is not None:
        ema.copy_to(model)
    if weighting is not None:
        log.term_weights = weighting.weights()
    if runtime.speed.channels_last:
        model.to(memory_format=torch.contiguous_format)  # saved and inspected weights keep the standard layout
    return log


def _ddp(model: nn.Module, runtime: Runtime) -> nn.Module:
    """The model under DistributedDataParallel (one device per rank). Its reducer warns that a
    1-channel first conv's gradient strides differ from its bucket's, which only size-1
    dimensions do: silenced."""
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=[runtime.device] if runtime.cuda else None)


def _micro_batches(rows: int, micro_batch: int | None) -> list[tuple[int, int]]:
    """(first, end) of each micro-batch of a step's `rows` (`Speed.micro_batch`): one part without."""
    step = micro_batch or rows
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def _augmenter(dsa: DSA | None, rows: tuple[int, int, int] | None) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """A step's augmentation. Under DDP the parameters are drawn for the whole global batch (an
    input tensor of m views per image holds m·size rows) and this rank applies its rows."""
    if dsa is None:
        return lambda x, g: x
    if rows is None:
        return dsa
    first, end, size = rows

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        m = x.shape[0] // max(1, end - first)
        params = dsa.sample(size * m, tuple(x.shape[-2:]), g)
        return dsa.apply(x, params.index(torch.arange(first * m, end * m)))

    return augment


def _finite(total: torch.Tensor, description: str, epoch: int, steps: int) -> float:
    """The summed loss as a float (the host waits for the device here), or `Diverged`."""
    value = total.item()
    if not math.isfinite(value):
        raise Diverged(f"{description}: loss became {value} at epoch {epoch} (within its first {steps} steps): lower the lr")
    return value


def _network(model: nn.Module, runtime: Runtime) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the loss terms call: `model` itself on the plain path; else a callable sharing its
    parameters that lays inputs out channels-last, runs the (compiled) network under the
    precision's autocast and returns fp32 logits, so every loss is computed in fp32."""
    speed = runtime.speed
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    if not (speed.compile or speed.channels_last or speed.precision != "fp32"):
        return model
    fn = flops.compiled(model) if speed.compile else model

    def forward(x: torch.Tensor) -> torch.Tensor:
        if speed.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            out = fn(x)
        return out.float()

    return forward


class _Ema:
    """GLaD's exponential moving average of the weights (glad@d221e9c `evaluate_synset`: ema_pytorch's
    `EMA(net, beta, power=1, update_after_step=0)`, updated once per epoch): the update after epoch
    k uses decay min(1 − 1/k, β), so the first copies the weights and the average is a plain mean
    of the epochs' weights until 1 − 1/k reaches β; the random initial weights never enter it.
    Every floating-point tensor of the state_dict is averaged (parameters and float buffers such as
    BN running statistics; integer buffers are copied) beside the training weights, and copied into
    the model once training ends. The decay depends only on k, so a resumed run continues exactly.
    The state_dict tensors share storage with the model, so they are gathered once and averaged
    with one fused op per update."""

    def __init__(self, model: nn.Module, beta: float):
        self.beta = beta
        live = model.state_dict()
        self.shadow = {k: v.detach().clone() for k, v in live.items()}
        floats = [k for k, v in live.items() if v.dtype.is_floating_point]
        self._pairs = ([self.shadow[k] for k in floats], [live[k] for k in floats])
        self._copies = [(self.shadow[k], v) for k, v in live.items() if k not in floats]

    @torch.no_grad()
    def update(self, k: int) -> None:
        """The update after epoch `k` (1, 2, …)."""
        decay = min(1 - 1 / k, self.beta)
        if decay == 0:
            torch._foreach_copy_(*self._pairs)
        else:
            torch._foreach_lerp_(*self._pairs, 1 - decay)
        for shadow, value in self._copies:
            shadow.copy_(value)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of `model` holding the average (training goes on with the model's own weights)."""
        copy = deepcopy(model)
        self.copy_to(copy)
        return copy


PREDICT_PIXELS = 512 * 32 * 32  # pixels per prediction batch: 512 images up to 32 px, 32 at 128 px


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean, std, *, batch_size: int | None = None) -> torch.Tensor:
    """Logits for uint8 images, in eval mode, a batch at a time. The default batch holds a fixed
    number of pixels, so activation memory does not grow with the resolution (512 images at 128 px
    hold 16 times the activations of 512 at 32 px)."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or max(1, min(512, PREDICT_PIXELS // (images.shape[-2] * images.shape[-1])))
    out = [model(normalize(chunk.to(device), mean, std)) for chunk in stream.chunks(images, batch_size)]  # a stored split: read by chunk
    return torch.cat(out)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std) -> float:
    pred = predict(model, images, mean, std).argmax(1).cpu()
    return (pred == labels.cpu()).float().mean().item()


def class_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std, num_classes: int) -> tuple[float, list[float]]:
    """(overall accuracy, accuracy on each class's images; NaN for a class without any) from one
    prediction pass."""
    hit = (predict(model, images, mean, std).argmax(1).cpu() == labels.cpu()).float()
    counts = labels.cpu().bincount(minlength=num_classes).float()
    return hit.mean().item(), (torch.zeros(num_classes).index_add_(0, labels.cpu(), hit) / counts).tolist()


# --- checkpoints: one safetensors file of weights per epoch, one of trainer state ---------------
STATE = "trainer_state.safetensors"  # generator, RNG and optimizer state + epoch (in its metadata)
ROLLING_EVERY_S = 600.0  # rolling (resume-only) checkpoints: also saved once this long has passed since the last


def checkpoint_path(directory: Path, epoch: float) -> Path:
    """`epoch_003` for whole epochs, `epoch_002.500` for fractions of one."""
    name = f"{int(epoch):03d}" if float(epoch).is_integer() else f"{epoch:07.3f}"
    return Path(directory) / f"epoch_{name}.safetensors"


def resumes_at(directory: Path) -> int:
    """The epoch a resume from `directory` starts at: its state's (which names the weights to load;
    newer weights without a state are a save cut short), 0 without one."""
    path = Path(directory) / STATE
    return int(state_meta(path)["epoch"]) if path.is_file() else 0


def saved_epochs(directory: Path) -> list[float]:
    return sorted(float(p.name.removeprefix("epoch_").removesuffix(".safetensors")) for p in Path(directory).glob("epoch_*.safetensors"))


def _fraction_steps(steps: int, saves_per_epoch: int) -> dict[int, float]:
    """Step count after which each fractional save j/f happens (whole epochs are saved anyway)."""
    return {
        round(j * steps / saves_per_epoch): j / saves_per_epoch
        for j in range(1, saves_per_epoch)
        if 0 < round(j * steps / saves_per_epoch) < steps
    }


# what each kind of `_state_tensors` is, for the error naming one a saved state lacks
STATE_KINDS = {"ema": "EMA of the weights", "term_weights": "learned term weights"}


def _state_tensors(ema: "_Ema | None", weighting: LearnedWeights | None) -> dict[str, torch.Tensor]:
    """The live tensors saved with the trainer state besides the optimizer's, named `kind.key`:
    the EMA's averages and any learned term weights. A resume copies them back in place."""
    tensors = {} if ema is None else {f"ema.{k}": v for k, v in ema.shadow.items()}
    if weighting is not None:
        tensors["term_weights.log_vars"] = weighting.log_vars
    return tensors


def _save(
    directory: Path, epoch: int, model, opt, gen, log: TrainLog, description: str, epochs: int, extra: dict, rolling: bool, scaler=None
) -> None:
    """Weights first, then the state naming their epoch (with the `_state_tensors` `extra` and
    every rank's global RNG): a crash between the two writes leaves the previous, consistent state,
    so a resume never mixes epochs. `rolling`: the older weights are removed once the state names
    the new ones. Called on every rank (the RNGs are gathered); rank 0 writes."""
    extra = {**extra, **ranks_rng()}
    if not dist.main():
        return
    weights = checkpoint_path(directory, epoch)
    save_tensors(weights, model.state_dict())
    meta = {"epoch": epoch, "samples": log.samples, "epoch_loss": log.epoch_loss}
    if scaler is not None:  # fp16's loss scale and growth count: a resume skips and grows as the run would have
        meta["scaler"] = scaler.state_dict()
    save_state(Path(directory) / STATE, {k: v.detach() for k, v in extra.items()}, meta, opt, gen, next(model.parameters()).device)
    if rolling:
        for old in Path(directory).glob("epoch_*.safetensors"):
            if old != weights:
                old.unlink()
        logger.debug(f"{description}: checkpoint: epoch {epoch}/{epochs} -> {weights}")
    else:
        progress.log(f"{description}: checkpoint: epoch {epoch}/{epochs} -> {weights}")


def _resume(directory: Path, model, opt, gen, log: TrainLog, description: str, epochs: int, extra: dict, scaler=None) -> int:
    path = Path(directory) / STATE
    if not path.exists():
        return 0
    device = next(model.parameters()).device
    tensors, meta = load_state(path, opt, gen, device)
    epoch = int(meta["epoch"])
    weights = checkpoint_path(directory, epoch)
    restore_weights(model, weights, device)
    for kind, what in STATE_KINDS.items():
        wanted = {k for k in extra if k.startswith(f"{kind}.")}
        if wanted and {k for k in tensors if k.startswith(f"{kind}.")} != wanted:
            raise ArtifactError(f"{path} holds no {what} for this recipe: delete {directory} to start over")
    with torch.no_grad():
        for k, v in extra.items():
            v.copy_(tensors[k])
    restore_rank_rng(tensors, path)
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    log.samples.update(meta["samples"])
    log.epoch_loss[:] = meta["epoch_loss"]
    progress.log(f"{description}: resuming from {weights} (epoch {epoch}/{epochs})")
    return epoch
