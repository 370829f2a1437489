"""Launching ranks in tests: `spawn` runs a function on 2 Gloo ranks in fresh processes (what
torchrun sets up, without its agent); `torchrun` runs a `ladd` command through torch.distributed.run.
Both give each process one thread, as the benchmarks do."""

from __future__ import annotations

import io
import traceback
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

from ladd.core import dist

ENV = {"OMP_NUM_THREADS": "1", "LADD_NO_PROGRESS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, fn, args, queue) -> None:
    os.environ.update(ENV, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init()
    try:
        try:
            value = fn(*args)
        except BaseException:  # reported, so the test fails with it instead of waiting for this rank's result
            queue.put((rank, traceback.format_exc()))
            raise
        buffer = io.BytesIO()
        torch.save(value, buffer)  # as bytes: tensors shared by file descriptor die with this process
        queue.put((rank, buffer.getvalue()))
        dist.finish()
    finally:
        dist.close()
    dist.exit(0)


def spawn(fn, *args, world: int = 2) -> list:
    """`fn(*args)` on `world` ranks (fn importable at module level); each rank's return value, in
    rank order. Values travel by pickle between the test's own processes."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    context = mp.start_processes(_rank, args=(world, free_port(), fn, args, queue), nprocs=world, start_method="spawn", join=False)
    results = {}
    while len(results) < world:  # read before joining: a large result fills the pipe
        rank, result = queue.get()
        if isinstance(result, str):
            for process in context.processes:
                process.terminate()
            raise AssertionError(f"rank {rank} failed:\n{result}")
        results[rank] = result
    while not context.join():
        pass
    return [torch.load(io.BytesIO(results[r]), weights_only=False) for r in range(world)]  # our own processes' bytes


def torchrun(
    *args,
    cwd: Path | None = None,
    nproc: int = 2,
    env: dict | None = None,
    timeout: float = 300,
    launcher: tuple[str, ...] = ("--standalone",),
) -> subprocess.CompletedProcess:
    """`torchrun LAUNCHER --nproc_per_node NPROC -m ladd ARGS` (`launcher`: the rendezvous options,
    one node by default); stdout and stderr captured as text."""
    return _run(dist.launch_command(nproc, launcher), args, cwd, env, timeout)


def ladd(*args, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The same command as one process."""
    return _run([sys.executable, "-m", "ladd"], args, cwd, env, timeout)


def _run(launch: list[str], args, cwd, env, timeout) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*launch, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
