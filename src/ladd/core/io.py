"""Atomic file writes and hashing: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load, save_file

from ladd.core.errors import LaddError


def umask_mode(mode: int) -> int:
    """`mode` less the process umask (mkstemp/mkdtemp create private 0600/0700 entries)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` into a temporary file beside `path`, then rename it over `path` (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors, written atomically (no pickle anywhere in ladd's own files)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_verified(path: Path, digest: str, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose SHA-256 must be `digest` (recorded in `where`);
    the bytes are read once, for the hash and the tensors."""
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise LaddError(f"{path} does not match the SHA-256 in {where}: the file was modified or corrupted")
    return load(data)


def read_json(path: Path, fix: str):
    """A JSON file we wrote; a corrupt one is a one-line error that ends with how to `fix` it."""
    from ladd.core.errors import LaddError

    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise LaddError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): {fix}") from e


def command_line() -> str:
    """The running command as one could type it again (`ladd eval A --seeds 3`, `python
    benchmarks/x.py --ipc 1`): every result file records it, so each number says how it was made."""
    program = Path(sys.argv[0])
    head = "ladd" if program.name in ("ladd", "__main__.py") else f"python {sys.argv[0]}"
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
