"""The cache ($LADD_CACHE, default ~/.cache/ladd): trained experts, distillation checkpoints,
learned labels, selection cells and dataset stores (`ladd.data.store`), each an entry keyed by
everything that determines it.

Every key carries its kind's format version (`FORMATS`), bumped whenever a change to ladd alters
what an entry of that kind would hold, so a fix never silently reuses what the old code made: the
new key misses, and `ladd cache prune --stale` removes the old entries. `entries`, `verify` and
`prune` are `ladd cache ls|verify|prune`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ladd.core.errors import ConfigError, LaddError
from ladd.core.logs import logger
from ladd.core.io import LOCK, OLD, TMP, file_in_the_way, load_safetensors, lock_path, sha256

# kind → format version of its entries. Bump one when what ladd would write there changes.
# distill 3, labels 2: their checkpoints record `core.checkpoint.FORMAT` (a finished one is read on every re-run)
FORMATS = {
    "experts": 1,
    "distill": 3,
    "labels": 2,
    "selection": 1,
    "teachers": 1,  # teachers: pretrained (`ladd.experts.pretrained`)
    "data": 1,
}  # dataset stores (`ladd.data.store`): bump when decoding (imagefolder.decode/_square) changes the pixels


def cache_root() -> Path:
    """$LADD_CACHE, default ~/.cache/ladd: an empty (or blank) LADD_CACHE counts as unset, as the
    shell's ${LADD_CACHE:-…} would, never as the current folder. A file where the cache folder
    must be is refused here, naming the variable, not later as an OS error on a path under it."""
    given = os.environ.get("LADD_CACHE", "").strip()
    root = Path(given) if given else Path.home() / ".cache" / "ladd"
    blocker = file_in_the_way(root)
    if blocker is not None:
        where = f"LADD_CACHE={given}" if given else f"the cache {root}"
        fix = "point LADD_CACHE at a folder, or unset it for ~/.cache/ladd" if given else "move it, or point LADD_CACHE at a folder"
        raise ConfigError(f"{where}: {blocker} is a file, not a folder: {fix}")
    return root


# An entry's folder name, written by `entry` and read by `_format`: `<name>-f<format>-<digest>`.
NAME = "{name}-f{format}-{digest}"
_NAME = re.compile(NAME.format(name=".+", format=r"(?P<format>\d+)", digest="[0-9a-f]{10}"))


def entry(kind: str, name: str, key) -> Path:
    """The cache path of one entry: `<root>/<kind>/<name>-f<format>-<hash of key and format>`."""
    digest = hashlib.sha256(json.dumps([FORMATS[kind], key], sort_keys=True).encode()).hexdigest()[:10]
    path = cache_root() / kind / NAME.format(name=name, format=FORMATS[kind], digest=digest)
    logger.debug("cache %s: %s (%s)", kind, path, "exists" if path.exists() else "new")
    return path


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    bytes: int
    modified: float  # newest file's mtime (seconds since the epoch)
    status: str  # complete | incomplete | stale (older format) | newer (format) | leftover (of a killed write)

    def row(self) -> dict:
        return {
            "kind": self.kind,
            "entry": self.path.name,
            "size_mb": round(self.bytes / 1e6, 2),
            "age_days": round((time.time() - self.modified) / 86400, 1),
            "status": self.status,
        }


def _format(name: str) -> int | None:
    """The format of a name of layout `NAME`; None for another layout (an older ladd's). Matched
    whole: the hex digest itself may read as `f<digits>`."""
    m = _NAME.fullmatch(name)
    return int(m["format"]) if m else None


def _status(kind: str, path: Path) -> str:
    if path.name.startswith(".") and path.name.endswith((TMP, OLD)):
        return "leftover"
    made = _format(path.name)
    if made is None or made < FORMATS[kind]:
        return "stale"
    if made > FORMATS[kind]:
        return "newer"  # made by a newer ladd: kept
    if kind == "experts":
        return "complete" if _json(path / "expert.json").get("complete") else "incomplete"
    if kind == "data":  # a store's folder appears whole, store.json in it; without it, it was damaged since
        return "complete" if (path / "store.json").is_file() else "incomplete"
    return "complete"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def entries(kinds: list[str] | None = None) -> list[Entry]:
    """Every entry of the cache (lock files aside), with its size, age and status."""
    out = []
    for kind in kinds or list(FORMATS):
        folder = cache_root() / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.endswith(LOCK):
                continue
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            sizes = [p.stat() for p in files]
            out.append(
                Entry(
                    kind,
                    path,
                    sum(s.st_size for s in sizes),
                    max((s.st_mtime for s in sizes), default=path.stat().st_mtime),
                    _status(kind, path),
                )
            )
    return out


def verify(e: Entry) -> str | None:
    """Why the entry is broken (re-hashed, re-parsed), or None when it reads back whole."""
    if e.status == "leftover" or not e.path.is_dir():
        return None if e.status == "leftover" else "not a folder"
    info = _json(e.path / "expert.json")
    if e.kind == "experts" and info.get("complete"):
        from ladd.train.loop import checkpoint_path  # the trainer's naming; core must not import it at load time

        final = checkpoint_path(e.path, info["config"]["epochs"])
        if not final.is_file():
            return f"{final.name} is missing"
        if sha256(final) != info.get("final_sha256"):
            return f"{final.name} does not match the SHA-256 in expert.json"
    if e.kind == "data":
        from ladd.data.store import verify as verify_store  # arrays re-hashed against store.json, re-opened

        problem = verify_store(e.path)
        if problem is not None:
            return problem
    for p in sorted(e.path.rglob("*")):
        if p.suffix == ".safetensors":
            try:
                load_safetensors(p)  # ladd's one parser: every declared size checked against the bytes
            except LaddError:
                return f"{p.relative_to(e.path)} is unreadable"
        elif p.suffix == ".json" and not _json(p):
            return f"{p.relative_to(e.path)} is not valid JSON"
    return None


def prune(selected: list[Entry], dry_run: bool = False) -> tuple[list[Entry], list[Entry]]:
    """Delete `selected` entries, skipping those a running ladd process holds; returns (removed, busy)."""
    removed, busy = [], []
    for e in selected:
        lock = FileLock(str(lock_path(e.path)))  # its own lock, not this process's re-entrant one: busy means held anywhere
        try:
            lock.acquire(timeout=0)
        except Timeout:
            busy.append(e)
            continue
        try:
            if not dry_run:
                shutil.rmtree(e.path) if e.path.is_dir() else e.path.unlink(missing_ok=True)
                Path(lock.lock_file).unlink(missing_ok=True)
            removed.append(e)
        finally:
            lock.release()
    return removed, busy
