"""Crash-safe writes, inter-process locks and hashing.

A file is written beside its final name, fsynced, renamed over it, and its directory fsynced, so
neither a SIGKILL nor a power loss leaves a half-written (or renamed but empty) file. A directory
(an artifact, a cache entry) is built in a hidden sibling and switched into place in one step:
`renameat2(RENAME_EXCHANGE)` where the kernel has it, else two renames whose gap `sweep` repairs.
Writers of one path hold its `lock` (a `filelock` file lock, released by the kernel when its
process dies), so a second process waits for, then reuses, what the first made.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import load, save_file

from ladd.core.errors import ArtifactError

TMP, OLD, LOCK = ".tmp", ".old", ".lock"  # suffixes of a path's hidden siblings: `.NAME.xxxx.tmp`, …


_UMASK = threading.Lock()


def umask_mode(mode: int) -> int:
    """`mode` less the process umask (mkstemp/mkdtemp create private 0600/0700 entries). The umask
    is read from /proc/self/status on Linux: `os.umask` can only read it by setting it, and while
    it is set every thread of the process (a user's, a data loader's) creates files with the wrong
    mode. Where that file is missing or lacks the line (other systems, Linux before 4.7), the umask
    is set and restored under a lock, to 0o077 meanwhile: a file made in that moment is private,
    never world-writable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mode & ~mask


def fsync(path: Path) -> None:
    """Flush a file's or directory's contents (a directory: its entries, i.e. renames) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_in_the_way(folder: Path) -> Path | None:
    """The file that stands where `folder` or one of its parents must be a folder (the nearest of
    them that exists, when it is not a folder); None when `folder` is one or can be made. Lets a
    caller refuse such a path naming what the user gave, before an OS error names a temporary file."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` into a temporary file beside `path`, fsync it, rename it over `path` and fsync
    the directory: after a crash `path` holds the old or the new bytes, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        fsync(tmp)
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync(path.parent)


def staging_dir(path: Path) -> Path:
    """A new hidden sibling of `path` to build a directory in before `replace_dir` switches it in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP, dir=path.parent))
    os.chmod(tmp, umask_mode(0o777))
    return tmp


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


@functools.cache
def _renameat2():
    """libc's renameat2, looked up once; None where libc has none."""
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the kernel or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(staged: Path, path: Path) -> None:
    """Make the directory `staged` (from `staging_dir`, files written with `atomic_write`) appear at
    `path` in one step, replacing what was there, and make it durable. Without RENAME_EXCHANGE the
    old directory is first renamed to a `.NAME.xxxx.old` sibling: a crash in that gap leaves it
    there, and `sweep` puts it back."""
    fsync(staged)
    if not path.exists():
        os.replace(staged, path)
    elif _exchange(staged, path):
        shutil.rmtree(staged)  # now the old directory
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=OLD, dir=path.parent))
        os.replace(path, old / "a")
        os.replace(staged, path)
        shutil.rmtree(old)
    fsync(path.parent)


_RAND = "[!.]" * 8  # mkstemp's random part: `.run.xxxxxxxx.tmp` is not a leftover of `run.v2`


def sweep(path: Path) -> None:
    """Clear what killed writers of `path` left beside it (staging directories, temporary files),
    and put back a directory a crash left renamed aside; says what it did. Call it holding `lock(path)`."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    left = sorted(path.parent.glob(f".{path.name}.{_RAND}{OLD}"))
    for old in left:
        if not path.exists() and (old / "a").exists():
            os.replace(old / "a", path)
            print(f"restored {path} from an interrupted replacement", file=sys.stderr)
        shutil.rmtree(old)
    staged = sorted(path.parent.glob(f".{path.name}.{_RAND}{TMP}"))
    if path.is_dir():
        staged += sorted(path.glob(f".*{TMP}"))
    for p in staged:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if staged:
        print(f"removed {len(staged)} leftover(s) of an interrupted write at {path}", file=sys.stderr)


def restore(path: Path) -> None:
    """Put back a directory that a crash left renamed aside (between the two renames of
    `replace_dir` without RENAME_EXCHANGE), so readers find it; nothing to do otherwise."""
    path = Path(path)
    if not path.exists() and path.parent.is_dir() and any(path.parent.glob(f".{path.name}.{_RAND}{OLD}")):
        with lock(path):
            sweep(path)


_LOCKS: dict[str, FileLock] = {}


def lock_path(path: Path) -> Path:
    """Where the lock of `path` lives: `.NAME.lock` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent.resolve() / f".{path.name}{LOCK}"


@contextlib.contextmanager
def lock(path: Path, what: str = "writing"):
    """Hold the inter-process lock of `path` (`.NAME.lock` beside it; re-entrant in one thread),
    saying so when another process holds it; yields whether it had to wait (the other process may
    have made what this one is about to). The kernel drops a dead process's lock, so a killed run
    never blocks the next one."""
    key = str(lock_path(path))
    file_lock = _LOCKS.setdefault(key, FileLock(key))
    waited = False
    try:
        file_lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another ladd process {what} {path} …", file=sys.stderr)
        file_lock.acquire()
        waited = True
    try:
        yield waited
    finally:
        file_lock.release()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors, written atomically (no pickle anywhere in ladd's own files)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_safetensors(
    path: Path, digest: str | None = None, where: str = "", device: str | None = None, *, metadata: bool = False, mapped: bool = False
):
    """The tensors of the safetensors file at `path` (whose SHA-256 must be `digest`, recorded in
    `where`, when given), on `device`; with `metadata`, (tensors, the header's string metadata).
    The one place ladd parses safetensors: a missing, unreadable, truncated or malformed file (a
    header longer than the file, non-JSON, a shape that does not fit its bytes, an unknown dtype)
    is a one-line LaddError naming the file; the parser checks every declared size against the
    bytes before allocating, so a hostile header cannot exhaust memory. `mapped` (CPU tensors,
    no metadata): the tensors are memory-mapped from the file instead of read into memory (the
    hash streams it), so they cost page cache that every process of a machine shares; ladd
    replaces files by renaming, which leaves a mapped one intact."""
    path = Path(path)
    if mapped:
        try:
            if digest is not None and sha256(path) != digest:
                raise ArtifactError(f"{path} does not match the SHA-256 in {where}: the file was modified or corrupted")
            with safe_open(path, framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except OSError as e:
            raise ArtifactError(f"cannot read {path}: {e.strerror or e}") from e
        except ArtifactError:
            raise
        except Exception as e:  # SafetensorError, dtypes torch lacks
            raise _unparsable(path, e) from e
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror or e}") from e
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ArtifactError(f"{path} does not match the SHA-256 in {where}: the file was modified or corrupted")
    try:
        tensors = load(data)
        if metadata:  # the header is valid JSON now: the parser accepted it
            meta = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    except MemoryError as e:
        raise ArtifactError(f"{path} is not a readable safetensors file (out of memory while parsing it)") from e
    except Exception as e:  # SafetensorError, dtypes torch lacks (TypeError, ValueError), ...
        raise _unparsable(path, e) from e
    tensors = tensors if device is None else {k: v.to(device) for k, v in tensors.items()}
    return (tensors, meta) if metadata else tensors


def load_metadata(path: Path) -> dict[str, str]:
    """The string metadata in the header of the safetensors file at `path`, without reading its
    tensors (a resume planner asks many multi-megabyte states for their epoch); the parser still
    checks the whole header against the file, and a bad file is the same one-line error as in
    `load_safetensors`."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt") as f:
            return f.metadata() or {}
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror or e}") from e
    except Exception as e:  # SafetensorError
        raise _unparsable(path, e) from e


def _unparsable(path: Path, e: Exception) -> ArtifactError:
    detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return ArtifactError(f"{path} is not a readable safetensors file ({detail}): replace it with a good copy")


def read_json(path: Path, fix: str):
    """A JSON file we wrote; a corrupt one (not JSON, not UTF-8, nested too deep, unreadable) is a
    one-line error that ends with how to `fix` it."""
    try:
        return json.loads(Path(path).read_bytes())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): {fix}") from e
    except (UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(
            f"{path} is not valid JSON ({'not UTF-8 text' if isinstance(e, UnicodeDecodeError) else 'nested too deeply'}): {fix}"
        ) from e
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror or e}") from e


def command_line(args: list[str] | None = None) -> str:
    """The running command as one could type it again (`ladd eval A --seeds 3`, `python
    benchmarks/x.py --ipc 1`): every result file records it, so each number says how it was made.
    `args` replace the command's own arguments (a sweep names the command of one of its cells)."""
    program = Path(sys.argv[0])
    head = "ladd" if program.name in ("ladd", "__main__.py") else f"python {sys.argv[0]}"
    return " ".join([head, *map(shlex.quote, sys.argv[1:] if args is None else args)])


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
