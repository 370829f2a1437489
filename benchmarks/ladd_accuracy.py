"""Accuracy of the hard-label baseline vs LADD over seeds, for a grid of IPC × crops-per-step ×
local reduction, with the same labeler for every cell. Prints a table and writes JSON.

    python benchmarks/ladd_accuracy.py --ipc 1 10 --seeds 3 --out runs/bench/ladd_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--crops", type=int, nargs="+", default=[5], help="crops per step K (25 = all)")
    p.add_argument("--reductions", nargs="+", default=["mean"], choices=["mean", "sum"])
    p.add_argument("--model", default="convnet-w64")
    p.add_argument("--labeler-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/bench/ladd_accuracy.json"))
    args = p.parse_args()

    runtime = Runtime.from_name(args.device)
    src = pipeline.SourceConfig(dataset=args.dataset)
    data = pipeline.load_source(src)
    label_cfg = pipeline.LabelConfig(labeler=ExpertConfig(model=args.model, epochs=args.labeler_epochs))
    rows = []
    for ipc in args.ipc:
        art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=ipc))
        art = pipeline.label(art, data, label_cfg, runtime)
        save_artifact(args.out.parent / f"artifact_ipc{ipc}", art)
        art = load_artifact(args.out.parent / f"artifact_ipc{ipc}")
        cells = [("baseline", None, "mean")] + [("ladd", k, red) for k in args.crops for red in args.reductions]
        for method, k, red in cells:
            t0 = time.perf_counter()
            cfg = EvalConfig(methods=(method,), models=(args.model,), seeds=args.seeds, epochs=args.epochs,
                             crops_per_step=k or "all", local_reduction=red)
            row = evaluate(art, data, cfg, runtime)[0]
            rows.append(row)
            print(f"IPC {ipc:>3} {method:<8} K={k!s:<4} {red:<4} acc {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f} "
                  f"({args.seeds} seeds, {time.perf_counter() - t0:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
