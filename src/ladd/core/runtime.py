"""Device and seeding: one place decides where tensors live and how randomness is drawn."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ladd.core.errors import LaddError


@dataclass(frozen=True)
class Runtime:
    """Where to compute. CPU by default; nothing in ladd assumes CUDA."""

    device: torch.device = torch.device("cpu")

    @classmethod
    def from_name(cls, name: str = "auto") -> "Runtime":
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise LaddError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise LaddError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise LaddError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return cls(device)


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
