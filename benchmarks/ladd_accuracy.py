"""Accuracy of the hard-label baseline vs LADD over seeds, for a grid of IPC × crops-per-step ×
local reduction, with the same labeler for every cell. With --select-lr every cell (the baseline
too) picks its student lr among the candidates on a validation split carved from the training
split, so a reduction is compared at its own best lr (the paper tunes η); the test split is read
once per final student. Prints a line per cell and writes JSON after each (a re-run with the same
options skips the cells already there).

    python benchmarks/ladd_accuracy.py --ipc 1 10 --crops 0 --reductions mean sum \
        --select-lr 0.0003 0.001 0.003 0.01 0.03 --out docs/results/local_reduction.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.io import command_line, read_json, write_json
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--crops", type=int, nargs="+", default=[0], help="crops per step K (0 = auto: ~500 local views per epoch; 25 = all)")
    p.add_argument("--reductions", nargs="+", default=["mean"], choices=["mean", "sum"])
    p.add_argument("--model", default="convnet-w64")
    p.add_argument("--labeler-epochs", type=int, default=10)
    p.add_argument("--protocol", default="dc-cpu")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (default: the protocol's)")
    p.add_argument("--select-lr", type=float, nargs="*", default=[], help="student lr candidates, chosen per cell on validation")
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--runs", type=Path, default=Path("runs/bench/ladd_accuracy"), help="folder for the artifacts")
    p.add_argument("--out", type=Path, default=Path("runs/bench/ladd_accuracy.json"))
    args = p.parse_args()

    runtime = Runtime.from_name(args.device)
    src = pipeline.SourceConfig(dataset=args.dataset)
    data = pipeline.load_source(src)
    label_cfg = pipeline.LabelConfig(labeler=ExpertConfig(model=args.model, epochs=args.labeler_epochs))
    settings = {k: str(v) for k, v in vars(args).items()}
    done = read_json(args.out, f"delete {args.out} to start again") if args.out.is_file() else {}
    rows = done.get("rows", []) if done.get("args") == settings else []  # an interrupted run with the same options resumes
    t_start = time.perf_counter() - done.get("wall_seconds", 0) if rows else time.perf_counter()
    for ipc in args.ipc:
        art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=ipc))
        art = pipeline.label(art, data, label_cfg, runtime)
        save_artifact(args.runs / f"artifact_ipc{ipc}", art)
        art = load_artifact(args.runs / f"artifact_ipc{ipc}")
        cells = [("baseline", None, "mean")] + [("ladd", k, red) for k in args.crops for red in args.reductions]
        for method, k, red in cells:
            key = {"ipc": ipc, "method": method, "crops": k, "reduction": red}
            if any(r["cell"] == key for r in rows):
                continue
            t0 = time.perf_counter()
            cfg = EvalConfig(
                methods=(method,),
                models=(args.model,),
                seeds=args.seeds,
                protocol=args.protocol,
                epochs=args.epochs,
                crops_per_step="auto" if k == 0 else (k or "all"),
                local_reduction=red,
                select_lr=tuple(args.select_lr),
                val_per_class=args.val_per_class,
            )
            row = {**evaluate(art, data, cfg, runtime)[0], "cell": key, "wall_seconds": time.perf_counter() - t0}
            rows.append(row)
            write_json(
                args.out,
                {
                    "benchmark": "ladd_accuracy",
                    "command": command_line(),
                    "args": settings,
                    "wall_seconds": time.perf_counter() - t_start,
                    "complete": False,
                    "rows": rows,
                },
            )
            chosen = f" lr {row['lr']:g} ({row['lr_source']})"
            print(
                f"IPC {ipc:>3} {method:<8} K={row['crops_per_step']!s:<4} {red:<4} acc {100 * row['acc_mean']:.2f} ± "
                f"{100 * row['acc_std']:.2f}{chosen} ({args.seeds} seeds, {row['wall_seconds']:.0f} s)",
                flush=True,
            )
    write_json(
        args.out,
        {
            "benchmark": "ladd_accuracy",
            "command": command_line(),
            "args": settings,
            "wall_seconds": time.perf_counter() - t_start,
            "complete": True,
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
