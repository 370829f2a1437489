"""The LADD paper's evaluation protocol on one dataset: per image method and IPC, `ladd distill`,
`ladd label` (LADD's defaults) and `ladd eval --preset paper` (ConvNet-128 students, protocol dc:
1000 epochs, 5 seeds, every local view) with the hard-label baseline, baseline++ (hard labels at
IPC + 1, the same stored bytes: `--equal-cost bytes`) and LADD. Every step runs the command line a
user would type; a cell already done is skipped and an interrupted one resumes (its students
checkpoint in the cell's run folder), so the table fills over several sittings. The JSON holds each
cell's rows and its wall time summed over its sittings (`wall.json` in the cell's folder keeps the
running sum, rewritten every minute, so a killed sitting counts up to its last minute). `--labeler-epochs` trains the
labeler longer than `ladd label`'s default, as chosen on validation by
benchmarks/accuracy_levers.py; it is part of the cell's identity. MTT's images need its expert
trajectories first: a failed step stops the sweep with that step's error, which names the
`ladd experts` command to run. `--nproc N` runs each `ladd eval` under torchrun on N ranks of this
machine, which share out the students (the rows equal one process's), each rank with cores/N
threads and a day's LADD_DIST_TIMEOUT_MIN unless set: a rank done early waits for the others'
last student, which takes hours under the paper's protocol on a CPU.

    python benchmarks/paper_protocol.py --dataset digits --ipc 1 10 --images random \\
        --out docs/results/paper_protocol_digits.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ladd.core import dist
from ladd.core.io import command_line, write_json
from ladd.core.progress import sitting
from ladd.experts import ExpertConfig

LABELER_EPOCHS = ExpertConfig().epochs  # the labeler's default length (`ladd label`'s too)

RANK_WAIT_MIN = 24 * 60  # --nproc: how long a rank waits for the others (`ladd`'s default is an hour)
KEEP = ("method", "model", "acc_mean", "acc_std", "n_seeds", "epochs", "image_bytes_zip", "label_bytes_zip", "flops", "budget")


def _ladd(*args, nproc: int = 1) -> None:
    argv = [*([sys.executable, "-m", "ladd"] if nproc == 1 else dist.launch_command(nproc)), *map(str, args)]
    shown = dist.typed(argv)
    print(f"$ {shown}", flush=True)
    ranks = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)), "LADD_DIST_TIMEOUT_MIN": str(RANK_WAIT_MIN)}
    done = subprocess.run(argv, env={**(ranks if nproc > 1 else {}), **os.environ})
    if done.returncode:  # ladd printed why (e.g. MTT's missing experts, with the command that makes them)
        raise SystemExit(f"paper_protocol: `{shown}` failed (exit {done.returncode}): see its error above; the cell resumes when rerun")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--images", nargs="+", default=["random"], help="image methods (their dataset recipes)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--seeds", type=int, default=None, help="default: the preset's (paper: 5)")
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's protocol's (paper: 1000)")
    p.add_argument("--labeler-epochs", type=int, default=LABELER_EPOCHS, help="`ladd label --labeler-epochs` (default: %(default)s)")
    p.add_argument("--runs", type=Path, default=Path("runs/paper"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--nproc", type=int, default=1, help="torchrun ranks for `ladd eval` (default: one process)")
    args = p.parse_args()
    if args.nproc < 1:
        p.error(f"--nproc {args.nproc}: give 1 (one process) or more torchrun ranks")
    cells = json.loads(args.out.read_text())["cells"] if args.out.is_file() else []
    done = {(c["images"], c["ipc"], c["labeler_epochs"]) for c in cells}
    for images in args.images:
        for ipc in args.ipc:
            if (images, ipc, args.labeler_epochs) in done:
                continue
            longer = "" if args.labeler_epochs == LABELER_EPOCHS else f"-labeler{args.labeler_epochs}"  # default cells keep their folders
            folder = args.runs / f"{args.dataset}-{images}-ipc{ipc}{longer}"
            art = folder / "artifact"
            with sitting(folder / "wall.json") as clock:
                if not (art / "manifest.json").is_file():
                    _ladd("distill", "--dataset", args.dataset, "--ipc", ipc, "--images", images, "--resume", "--out", art)
                if "labels" not in json.loads((art / "manifest.json").read_text()):
                    _ladd("label", art, "--labeler-epochs", args.labeler_epochs)
                extra = [*(["--seeds", args.seeds] if args.seeds else []), *(["--epochs", args.epochs] if args.epochs else [])]
                _ladd(
                    "eval",
                    art,
                    "--preset",
                    args.preset,
                    "--methods",
                    "baseline,ladd",
                    "--equal-cost",
                    "bytes",
                    *extra,
                    "--out",
                    folder / "eval",
                    nproc=args.nproc,
                )
            results = json.loads((folder / "eval" / "results.json").read_text())
            rows = [{k: r.get(k) for k in KEEP} for r in results["rows"]]
            wall = {
                "wall_s": round(clock["wall_s"]),
                "sittings": clock["sittings"],
                "cpus": os.cpu_count(),
                "loadavg_end": round(os.getloadavg()[0], 1),
            }
            cell = {"images": images, "ipc": ipc, "labeler_epochs": args.labeler_epochs}
            cells.append({**cell, **wall, "made_by": command_line(), "command": results["command"], "rows": rows})
            made = " && ".join(dict.fromkeys(c["made_by"] for c in cells))  # each sweep that added cells, in order
            write_json(args.out, {"command": made, "dataset": args.dataset, "preset": args.preset, "cells": cells})
            for r in rows:
                acc = f"{100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f}"
                print(f"{images} IPC {ipc} labeler {args.labeler_epochs} ep {r['method']:12s} {acc}", flush=True)


if __name__ == "__main__":
    main()
