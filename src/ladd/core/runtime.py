"""Device, speed settings and seeding: one place decides where tensors live, how the trainer
computes (precision, compilation, memory layout, determinism) and how randomness is drawn."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ladd.core import dist
from ladd.core.errors import ConfigError, RunError

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs to be deterministic (CUDA's reproducibility notes)


class Speed(BaseModel):
    """How networks train and label (`ladd.train.loop.train`, dense labels, relabel), separate from
    what they compute: the defaults are the plain fp32 path, which every recorded result used.

    - `precision` bf16/fp16: forward passes under `torch.autocast` (weights, gradients and the
      optimizer stay fp32; logits are cast to fp32 before any loss or softmax). fp16 trains with a
      `GradScaler` and is for CUDA: on a CPU it is refused, since bf16 keeps fp32's range (no
      scaler) and is what CPU kernels accelerate (AVX-512 BF16/AMX; on a Sapphire Rapids core
      oneDNN's fp16 convolutions ran slower than fp32 ones).
    - `compile`: `torch.compile` the network (forward and backward; augmentation and loss terms stay
      eager). One graph serves every fresh network of an architecture; the first compile costs
      tens of seconds per process (inductor caches it on disk for the next).
    - `channels_last`: NHWC weights and activations (cuDNN's tensor-core layout on GPUs; slower for
      the ConvNets on CPU, benchmarks/trainer_speed.py).
    - `deterministic`: `torch.use_deterministic_algorithms(True)`, cuDNN benchmark off and
      deterministic, cuBLAS's fixed workspace, so the same seed gives the same weights on a GPU
      too (on CPU it already does). An op with no deterministic CUDA kernel then stops the run
      with a one-line error naming it. Not with `compile` (inductor's kernels are not covered).
      cuBLAS reads its workspace setting when it starts: `Runtime.from_name` sets it, so build
      the runtime before any CUDA work.
    - `micro_batch`: at most this many images per forward pass (per rank under torchrun): a
      step's batch is split into parts whose gradients accumulate before its one optimizer step,
      each part drawing the augmentation and crops the whole batch draws and applying its rows,
      so the step is the whole batch's up to float summation order, in a part's activation
      memory (LADD's every-view students forward B·N² sub-images per step: 256 × 25 at 128 px do
      not fit a GPU). BatchNorm layers normalize each part over its own images, as under DDP, and dropout draws
      its masks part by part.
    - `check_every`: steps between checks that the loss is finite (0 = once per epoch). Each check
      makes the host wait for the device; a run that diverges still raises `Diverged`, at the
      check (and before any checkpoint of NaN weights is written).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Precision = "fp32"
    compile: bool = False
    channels_last: bool = False
    deterministic: bool = False
    micro_batch: int | None = Field(None, ge=1)
    check_every: int = Field(0, ge=0)


@dataclass(frozen=True)
class Runtime:
    """Where and how to compute. CPU and fp32 by default; nothing in ladd assumes CUDA."""

    device: torch.device = torch.device("cpu")
    speed: Speed = field(default_factory=Speed)

    def __post_init__(self):
        s = self.speed
        if s.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(
                f"--precision fp16 needs a CUDA device (it trains with a gradient scaler), not {self.device}: use --precision bf16"
            )
        if s.deterministic and s.compile:
            raise ConfigError("--deterministic does not cover torch.compile's generated kernels: leave out --compile or --deterministic")

    @classmethod
    def from_name(cls, name: str = "auto", speed: Speed | None = None) -> "Runtime":
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from e
        if device.type == "cuda" and device.index is not None and dist.launched():
            raise ConfigError(f"--device {name} under torchrun would put every rank on one GPU: give --device cuda (one per rank)")
        if device.type == "cuda" and device.index is None and dist.launched():
            device = torch.device("cuda", dist.local_rank() % max(1, torch.cuda.device_count()))  # torchrun: one GPU per rank
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RunError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise RunError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
        speed = speed or Speed()
        if speed.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS starts: before any CUDA work
        return cls(device, speed)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    # --- what the trainer and the labelling passes use -------------------------------------
    def autocast(self):
        """The precision's autocast on this device (a no-op for fp32)."""
        if self.speed.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.speed.precision])

    def scaler(self) -> "torch.amp.GradScaler | None":
        """fp16's loss scaler (CUDA only, see `Speed`); None otherwise."""
        return torch.amp.GradScaler(self.device.type) if self.speed.precision == "fp16" else None

    def put(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on the device without the host waiting: on CUDA copied from pinned memory
        (the caching host allocator keeps the block until the copy has run)."""
        if self.cuda and t.device.type == "cpu":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def fetch(self, t: torch.Tensor) -> torch.Tensor:
        """A device tensor copied to the host without waiting (into pinned memory on CUDA): read it
        only after `wait()`."""
        return t.to("cpu", non_blocking=True) if self.cuda else t.cpu()

    def wait(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def settings(self):
        """The process-wide switches `deterministic` needs, set for the duration and restored after."""
        if not self.speed.deterministic:
            yield
            return
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        before = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
        )
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        try:
            yield
        except RuntimeError as e:  # torch names the op that has no deterministic kernel
            if "deterministic" not in str(e):
                raise
            raise ConfigError(f"--deterministic: {str(e).splitlines()[0]}: leave out --deterministic for this model or device") from e
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


def generator(seed: int) -> torch.Generator:
    """A CPU generator: random draws are made on CPU so a seed gives the same draws on any device."""
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch's global RNG for code we do not control (nn.init, dropout), restoring it afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
