"""Does every rank of a successful torchrun job exit 0 when the CPUs are oversubscribed?

A rank that finishes its work can still die at exit: a Gloo worker thread that lets go of a
finished collective's tensors once the interpreter's teardown has begun aborts the process
(SIGABRT, "terminate called without an active exception"), and torchrun reports the whole job
failed. The race shows when a rank's threads are starved, so this launches the same small job
(`ladd distill` with DM on digits, 4 iterations, 2 ranks) `--launches` times beside `--hogs`
busy-looping processes and counts the launches that did not exit 0 and the aborts among them.

    python benchmarks/torchrun_exit.py --launches 50 --hogs 3 --out docs/results/torchrun_exit.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ladd.core import dist
from ladd.core.io import command_line, write_json

JOB = "distill --dataset digits --ipc 1 --images dm --float-images --param iterations=4 --param checkpoint_every=2 --param compile=false"


def launch(nproc: int, work: Path) -> dict:
    """One torchrun job in fresh folders: its exit code, wall seconds and whether a rank aborted."""
    cmd = [*dist.launch_command(nproc), *JOB.split()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LADD_NO_PROGRESS": "1", "LADD_CACHE": str(work / "cache")}
    start = time.perf_counter()
    done = subprocess.run([*cmd, "--out", str(work / "out")], env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    return {
        "returncode": done.returncode,
        "seconds": round(time.perf_counter() - start, 2),
        "aborted": "SIGABRT" in output or "terminate called" in output,
        "tail": output[-2000:] if done.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--launches", type=int, default=50)
    p.add_argument("--hogs", type=int, default=3, help="busy-looping processes beside each launch")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bench/torchrun_exit.json"))
    args = p.parse_args(argv)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    runs = []
    try:
        for i in range(args.launches):
            with tempfile.TemporaryDirectory(prefix="ladd-torchrun-exit-") as tmp:
                runs.append(launch(args.nproc, Path(tmp)))
            r = runs[-1]
            aborted = " (a rank aborted)" if r["aborted"] else ""
            print(f"launch {i + 1}/{args.launches}: exit {r['returncode']}{aborted} in {r['seconds']:.1f} s", flush=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    failed = sum(r["returncode"] != 0 for r in runs)
    aborted = sum(r["aborted"] for r in runs)
    result = {
        "command": command_line(),
        "job": f"torchrun --standalone --nproc_per_node {args.nproc} -m ladd {JOB}",
        "conditions": {"cpu_count": os.cpu_count(), "hogs": args.hogs, "threads": 1, "platform": platform.platform()},
        "launches": len(runs),
        "failed": failed,
        "aborted": aborted,
        "median_s": sorted(r["seconds"] for r in runs)[len(runs) // 2],
        "runs": runs,
    }
    write_json(args.out, result)
    print(f"{failed} of {len(runs)} launches failed ({aborted} with an aborted rank) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
