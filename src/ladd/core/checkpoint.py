"""Resumable state in one safetensors file: tensors, optimizer buffers, generator and RNG states,
and JSON metadata. One file, written atomically, so a resume never mixes two moments. Every file
records `FORMAT`; a resume refuses any other (older ladd versions' states are not converted)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ladd.core import dist
from ladd.core.errors import ArtifactError
from ladd.core.io import load_metadata, load_safetensors, save_tensors

FORMAT = "1"  # bumped when what a state file holds changes (a string: safetensors metadata are strings)
FIX = "delete it (or its checkpoint folder) to start over"


def save_state(
    path: Path, tensors: dict[str, torch.Tensor], meta: dict, opt: torch.optim.Optimizer, gen: torch.Generator, device=None
) -> None:
    """The state a run resumes from; `device` is the one it trains on: its CUDA RNG is also kept as
    `cuda_rng`, restored onto whichever device resumes the run (a student trained alone on rank r's
    GPU may be resumed by another rank)."""
    state = {f"t.{k}": v for k, v in tensors.items()}
    state["generator"] = gen.get_state()
    state["torch_rng"] = torch.get_rng_state()
    for d in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):  # every device `seeded` seeds, not only the current one
        state[f"cuda_rng.{d}"] = torch.cuda.get_rng_state(d)
    index = _cuda_index(device)
    if index is not None:
        state["cuda_rng"] = torch.cuda.get_rng_state(index)
    for i, s in opt.state_dict()["state"].items():
        state.update({f"opt.{i}.{k}": v for k, v in s.items() if isinstance(v, torch.Tensor)})
    save_tensors(Path(path), state, metadata={"format": FORMAT, "ladd": json.dumps(meta)})


def load_state(path: Path, opt: torch.optim.Optimizer, gen: torch.Generator, device) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore optimizer, generator and RNG states in place; return (tensors, meta). A file that is
    corrupt, of another format or from another run (other parameters) is a one-line LaddError, and
    nothing is restored."""
    state, metadata = load_safetensors(path, metadata=True)
    meta = _meta(path, metadata)
    try:
        opt_state = opt.state_dict()
        restored = {}
        for key, value in state.items():
            if key.startswith("opt."):
                _, i, k = key.split(".", 2)
                restored.setdefault(int(i), {})[k] = value  # placed by load_state_dict (Adam's step stays on the host)
        params = [p for group in opt.param_groups for p in group["params"]]  # state index i = params[i]
        for i, buffers in restored.items():
            if not 0 <= i < len(params) or any(b.ndim and b.shape != params[i].shape for b in buffers.values()):
                raise ValueError("its optimizer state is for other parameters")
        probe = torch.Generator(device=gen.device)
        probe.set_state(state["generator"])  # raises on a malformed state before anything is changed
        rng = state["torch_rng"]
        if rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
            raise ValueError("its RNG state has the wrong size")
        # per CUDA device, then "cuda_rng": the training device's, onto the device resuming the run
        cuda = {int(k.removeprefix("cuda_rng.")): v for k, v in state.items() if k.startswith("cuda_rng.")}
        if "cuda_rng" in state:
            cuda[None] = state["cuda_rng"]
        opt_state["state"].update(restored)
        opt.load_state_dict(opt_state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, RecursionError) as e:
        raise _unusable(path, e) from e
    gen.set_state(state.pop("generator"))
    torch.set_rng_state(state.pop("torch_rng"))
    for d, rng in cuda.items():
        if torch.cuda.is_available() and (d is None or d < torch.cuda.device_count()):
            own = _cuda_index(device)
            torch.cuda.set_rng_state(rng, d if d is not None else own if own is not None else "cuda")
    tensors = {k[2:]: v.to(device) for k, v in state.items() if k.startswith("t.")}
    return tensors, meta


def _cuda_index(device) -> int | None:
    """The index of a CUDA `device` ("cuda" = the current one); None for another device or none."""
    if device is None or not torch.cuda.is_available():
        return None
    d = torch.device(device)
    return None if d.type != "cuda" else d.index if d.index is not None else torch.cuda.current_device()


def ranks_rng() -> dict[str, torch.Tensor]:
    """Under torchrun, every rank's global RNG (CPU, and its CUDA device's) as state tensors
    (`rng.RANK.cpu|cuda`), for the state rank 0 writes: ranks draw it unequally (dropout over
    unequal shares), so each resumes its own (`restore_rank_rng`). A collective: every rank calls it
    at the same point; `{}` for one process (`load_state` restores its RNG)."""
    if not dist.active():
        return {}
    own = {"cpu": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})}
    return {f"rng.{r}.{kind}": t for r, states in enumerate(dist.gather(own)) for kind, t in states.items()}


def restore_rank_rng(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Under torchrun, this rank's own global RNG from `ranks_rng`'s tensors in a loaded state, where
    the state has one for this rank (a state of fewer ranks leaves `load_state`'s, rank 0's)."""
    if not dist.active():
        return
    for kind, current in (("cpu", torch.get_rng_state), ("cuda", torch.cuda.get_rng_state)):
        rng = tensors.get(f"rng.{dist.rank()}.{kind}")
        if rng is None or (kind == "cuda" and not torch.cuda.is_available()):
            continue
        rng = rng.cpu()
        if rng.dtype != torch.uint8 or rng.shape != current().shape:
            raise _unusable(path, ValueError(f"its rank {dist.rank()} {kind} RNG state has the wrong size"))
        (torch.set_rng_state if kind == "cpu" else torch.cuda.set_rng_state)(rng)


def state_meta(path: Path) -> dict:
    """The JSON metadata of the state file at `path` (e.g. the epoch it resumes at), without
    restoring anything; the same one-line errors as `load_state`."""
    return _meta(path, load_metadata(path))


def _meta(path: Path, metadata: dict) -> dict:
    if metadata.get("format") != FORMAT:
        made = "no format" if "format" not in metadata else f"format {metadata['format'][:20]!r}"
        raise ArtifactError(f"{path} is a checkpoint of another ladd version ({made}; this ladd reads format {FORMAT!r}): {FIX}")
    try:
        meta = json.loads(metadata["ladd"])
        if not isinstance(meta, dict):
            raise TypeError("its metadata is not a JSON object")
    except (KeyError, TypeError, ValueError, RecursionError) as e:
        raise _unusable(path, e) from e
    return meta


def _unusable(path: Path, e: Exception) -> ArtifactError:
    return ArtifactError(f"{path} is not a usable trainer state ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): {FIX}")


def check_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """`state` (loaded from `path`) must hold exactly `model`'s parameter and buffer names with their
    shapes; else a one-line LaddError saying what differs (load_state_dict's is many lines)."""
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    wrong = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    bad_type = [k for k in want if k in state and k not in wrong and want[k].is_floating_point() != state[k].is_floating_point()]
    if missing or extra or wrong or bad_type:
        what = (
            "missing " + ", ".join(missing[:3])
            if missing
            else "unexpected " + ", ".join(extra[:3])
            if extra
            else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, not {tuple(want[wrong[0]].shape)}"
            if wrong
            else f"{bad_type[0]} is {state[bad_type[0]].dtype}, not {want[bad_type[0]].dtype}"
        )
        raise ArtifactError(
            f"{path} does not hold the weights of this {type(model).__name__} ({what}): it was saved from another model or is corrupt"
        )


def restore_weights(model: nn.Module, path: Path, device=None) -> None:
    """Load a safetensors state dict into `model`, checked first (`check_weights`): every failure is one line."""
    state = load_safetensors(path, device=None if device is None else str(device))
    check_weights(model, state, path)
    model.load_state_dict(state)
