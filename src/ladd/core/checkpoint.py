"""Resumable state in one safetensors file: tensors, optimizer buffers, generator and RNG states,
and JSON metadata. One file, written atomically, so a resume never mixes two moments."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ladd.core.io import save_tensors


def save_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    state = {f"t.{k}": v for k, v in tensors.items()}
    state["generator"] = gen.get_state()
    state["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    for i, s in opt.state_dict()["state"].items():
        state.update({f"opt.{i}.{k}": v for k, v in s.items() if isinstance(v, torch.Tensor)})
    save_tensors(Path(path), state, metadata={"ladd": json.dumps(meta)})


def load_state(path: Path, opt: torch.optim.Optimizer, gen: torch.Generator, device) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore optimizer, generator and RNG states in place; return (tensors, meta)."""
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["ladd"])
    state = load_file(path)
    gen.set_state(state.pop("generator"))
    torch.set_rng_state(state.pop("torch_rng"))
    cuda_rng = state.pop("cuda_rng", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng)
    tensors = {k[2:]: v.to(device) for k, v in state.items() if k.startswith("t.")}
    opt_state = opt.state_dict()
    for key, value in state.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            opt_state["state"].setdefault(int(i), {})[k] = value.to(device)
    opt.load_state_dict(opt_state)
    return tensors, meta
