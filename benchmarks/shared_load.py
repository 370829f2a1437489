"""Memory of P processes holding one safetensors file: read into memory vs memory-mapped.

Under torchrun every rank of a machine loads the same artifact and relabel store. Read, each
rank holds its own copy; mapped (`load_safetensors(mapped=True)`, what artifacts and relabel
stores use), the ranks share the page cache. Each case starts P processes that load the file,
touch every page, and report, while all of them hold it, their resident set (RSS, which counts
shared pages in full in every process) and proportional set (PSS: a shared page counted 1/P in
each), from /proc/self/smaps_rollup, and their peak RSS while loading; the sum of the PSS is what
the machine spends.

    python benchmarks/shared_load.py --out docs/results/shared_load.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import torch

from ladd.core.io import command_line, save_tensors, sha256, write_json


def _memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_mb": fields["Rss"], "pss_mb": fields["Pss"], "peak_rss_mb": peak}


def _hold(path: str, digest: str, mapped: bool, barrier, queue) -> None:
    from ladd.core.io import load_safetensors

    t0 = time.perf_counter()
    tensors = load_safetensors(Path(path), digest, "the benchmark", mapped=mapped)
    # one byte of every 4 KiB page: every page resident, no temporary the size of the tensor
    total = sum(int(t.view(-1).view(torch.uint8)[::4096].sum()) for t in tensors.values())
    seconds = time.perf_counter() - t0
    barrier.wait()  # every process holds the tensors now
    queue.put({**_memory_mb(), "load_seconds": seconds, "checksum": total})
    barrier.wait()  # nobody lets go before every process has measured


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=1024, help="size of the file's tensor in MB")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bench/shared_load.json"))
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.safetensors"
        images = torch.randint(0, 256, (args.mb, 1024, 1024), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        save_tensors(path, {"images": images})
        del images
        digest = sha256(path)
        cases = []
        for mapped in (False, True):
            barrier, queue = ctx.Barrier(args.processes), ctx.Queue()
            procs = [ctx.Process(target=_hold, args=(str(path), digest, mapped, barrier, queue)) for _ in range(args.processes)]
            for proc in procs:
                proc.start()
            results = [queue.get() for _ in procs]
            for proc in procs:
                proc.join()
            case = {
                "load": "mapped" if mapped else "read",
                "processes": results,
                "total_pss_mb": sum(r["pss_mb"] for r in results),
                "max_rss_mb": max(r["rss_mb"] for r in results),
                "max_peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            }
            cases.append(case)
            seconds = max(r["load_seconds"] for r in results)
            print(
                f"{case['load']:>6}: {args.processes} processes, RSS up to {case['max_rss_mb']:,.0f} MB each, "
                f"peak {case['max_peak_rss_mb']:,.0f} MB, PSS {case['total_pss_mb']:,.0f} MB in all, load {seconds:.1f} s",
                flush=True,
            )
    write_json(
        args.out,
        {"command": command_line(), "torch": torch.__version__, "file_mb": args.mb, "processes": args.processes, "cases": cases},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
