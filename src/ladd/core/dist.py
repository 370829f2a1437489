"""Several processes of one command, launched by torchrun: who this process is, how work divides,
and the few collectives ladd needs.

`torchrun --nproc_per_node P [--nnodes M …] -m ladd COMMAND …` starts P·M copies of the command;
`init()` (the CLI calls it first) joins them into one process group from torchrun's environment:
Gloo for CPU tensors, NCCL for CUDA ones. Without torchrun everything here is the one-process
case (rank 0 of 1), so callers use these helpers unconditionally.

Work divides in two ways, each giving the one-process result:
- **data-parallel**: the ranks share one computation (one network under DDP, one squeeze): each
  takes `part(n)` of every batch and the ranks reduce (`all_sum`);
- **assignment**: independent units (students, recover batches, relabel epochs, label chunks) go
  round-robin, `mine(n)` = rank, rank + world, …; `gather` brings the results to every rank.
`alone()` runs a block as one process (a whole student on one rank), so the rank-aware code
inside neither splits nor waits. Rank 0 writes every shared file (`first`); caches are filled
under the file locks of `core.io`, so ranks and separate jobs never train the same entry twice.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import datetime
import os
import shlex
import sys
from typing import Any, Callable, NoReturn, TypeVar

import torch
import torch.distributed as td

from ladd.core.errors import ConfigError, RunError

T = TypeVar("T")
_alone = contextvars.ContextVar("ladd_dist_alone", default=False)
TIMEOUT_ENV = "LADD_DIST_TIMEOUT_MIN"  # how long a rank waits for the others (default 60 minutes)


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return _env_number("WORLD_SIZE", int, 1, 1, 1 << 20) > 1


def _env_number(name: str, kind: type, default, lo, hi):
    """The number in the environment variable `name`, `default` when unset. torchrun sets its own
    right, so a bad one was set by hand: a one-line error naming it, as for LADD_WORKERS, rather
    than a ValueError from deep inside."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:  # NaN fails both comparisons
        number = "whole number" if kind is int else "number"
        raise ConfigError(f"{name}={text!r} is not a {number} from {lo:.15g} to {hi:.15g}: fix or unset it")
    return value


def launch_command(nproc: int, launcher: tuple[str, ...] = ("--standalone",)) -> list[str]:
    """The argv that starts `ladd` on `nproc` ranks of this node under torchrun (append the ladd
    command); `launcher` holds torchrun's rendezvous options (one node: `--standalone`)."""
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "--nproc_per_node", str(nproc), "-m", "ladd"]


def typed(argv: list[str]) -> str:
    """`argv` (a `launch_command` or `python -m ladd` one) as a user types it: `torchrun …`, `ladd …`."""
    for module, name in (("torch.distributed.run", "torchrun"), ("ladd", "ladd")):
        if argv[:3] == [sys.executable, "-m", module]:
            return shlex.join([name, *argv[3:]])
    return shlex.join(argv)


def init() -> None:
    """Join torchrun's process group (a no-op without torchrun or when joined already). RANK is
    checked first, with or without torchrun: progress reads it to choose the rank that prints."""
    process_rank()
    if not launched() or td.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and td.is_nccl_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    minutes = _env_number(TIMEOUT_ENV, float, 60.0, 0.01, 1e6)
    td.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))


def finish() -> None:
    """Leave the group after a success: every rank waits for the others first, since Gloo aborts a
    rank whose peer closes mid-exchange."""
    barrier()
    close()


def close() -> None:
    """Leave the group at once (after an error: torchrun sees the failure and stops the other ranks)."""
    if td.is_initialized():
        td.destroy_process_group()


def exit(code: int) -> NoReturn:
    """End the process with `code`, after `finish` or `close`. A rank ends without the interpreter's
    teardown: a Gloo worker thread can still hold a finished collective's tensors, and when it lets
    them go after teardown has begun it cannot take the GIL and aborts the whole process (SIGABRT,
    "terminate called without an active exception") after its work is done. The exit hooks (log
    files, temporary folders) still run; one process exits normally."""
    try:
        several = launched()
    except ConfigError:  # WORLD_SIZE unreadable: `init` refused it, so no group was joined
        several = False
    if not several:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def own_work() -> bool:
    """Whether this rank works alone on a unit of its own (inside `alone()`: a student, a recover unit)."""
    return _alone.get()


def active() -> bool:
    """Whether rank-aware code splits its work here (several ranks, not inside `alone()`)."""
    return td.is_initialized() and td.get_world_size() > 1 and not _alone.get()


def world() -> int:
    return td.get_world_size() if active() else 1


def rank() -> int:
    return td.get_rank() if active() else 0


def main() -> bool:
    """Whether this process writes the shared files (rank 0, or the only process)."""
    return rank() == 0


def local_rank() -> int:
    return _env_number("LOCAL_RANK", int, 0, 0, 1 << 20)


def process_rank() -> int:
    """This process's rank under torchrun (0 alone): also before `init` and inside `alone()`."""
    return _env_number("RANK", int, 0, 0, 1 << 20)


def where() -> str:
    """'rank 1 of 4: ' for messages from a rank; '' for one process."""
    return f"rank {td.get_rank()} of {td.get_world_size()}: " if td.is_initialized() and td.get_world_size() > 1 else ""


@contextlib.contextmanager
def alone():
    """Run the block as one process: `world()` is 1 and nothing inside waits for other ranks."""
    token = _alone.set(True)
    try:
        yield
    finally:
        _alone.reset(token)


def mine(n: int) -> range:
    """The units of `n` this rank does: rank, rank + world, …"""
    return range(rank(), n, world())


def part(n: int) -> slice:
    """This rank's contiguous share of `n` rows (shares differ by at most one row)."""
    r, w = rank(), world()
    return slice(n * r // w, n * (r + 1) // w)


def barrier() -> None:
    if active():
        td.barrier()


def gather(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank (`[obj]` for one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * td.get_world_size()
    td.all_gather_object(out, obj)
    return out


def merge(units: dict[int, T]) -> dict[int, T]:
    """Unit → result maps from every rank merged into one (each rank did its `mine` units)."""
    merged: dict[int, T] = {}
    for d in gather(units):
        merged.update(d)
    return merged


def in_order(done: dict[int, T], count: int) -> list[T]:
    """Results of units 0 … count − 1 on every rank, in unit order, from each rank's `done`
    (its `mine(count)` units' results, on the host)."""
    merged = merge(done)
    return [merged[u] for u in range(count)]


def concat(done: dict[int, torch.Tensor], count: int) -> torch.Tensor:
    """`torch.cat` of units 0 … count − 1's CPU tensors on every rank, from each rank's `done` (its
    `mine(count)` units' results, rows along dim 0). Each rank writes its units into zeros and one
    all-reduce (Gloo, also beside NCCL) sums their bytes, so every byte is one rank's exactly
    (−0.0 included): a tensor collective, where gathering the objects would pickle
    every rank's tensors and hold them world times over (LADD's dense labels for ImageNet-1K at
    IPC 10 are 1 GB)."""
    if not active():
        return torch.cat([done[u] for u in range(count)])
    shapes = merge({u: (tuple(t.shape), t.dtype) for u, t in done.items()})  # a few numbers per unit
    rows = [shapes[u][0][0] for u in range(count)]
    out = torch.zeros((sum(rows), *shapes[0][0][1:]), dtype=shapes[0][1])
    first = [sum(rows[:u]) for u in range(count)]
    for u, t in done.items():
        out[first[u] : first[u] + rows[u]] = t
    td.all_reduce(out.view(-1).view(torch.uint8))
    return out


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over the ranks, in place (float summation order differs from one process's)."""
    if active():
        td.all_reduce(t)
    return t


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def first(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and return its value on every rank; when it fails there, the other
    ranks fail too with its message instead of waiting."""
    if not active():
        return fn()
    value, error = None, None
    if main():
        try:
            value = fn()
        except Exception as e:  # shared below, re-raised here unchanged
            error = e
    sent = broadcast((value, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if sent[1] is not None:
        raise RunError(f"rank 0 failed ({sent[1]}), so this rank stops too")
    return sent[0]


@contextlib.contextmanager
def locked(path, what: str = "writing"):
    """`core.io.lock(path)` for the whole group: rank 0 holds it while every rank works inside
    (another job waits for the group; the ranks never wait for each other's lock). Yields, on
    every rank, whether rank 0 had to wait for it."""
    from ladd.core.io import lock

    if not active():
        with lock(path, what) as waited:
            yield waited
        return
    with lock(path, what) if main() else contextlib.nullcontext(False) as waited:
        waited = broadcast(waited)  # the others wait here until rank 0 holds it
        yield waited
        barrier()
