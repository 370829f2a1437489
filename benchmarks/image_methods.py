"""Every image method with hard labels and with LADD labels, over IPC and seeds, on one dataset:
accuracy mean ± std, distillation seconds, peak memory. Prints a table and writes JSON.

    python benchmarks/image_methods.py --ipc 1 10 --methods random herding dm dc dsa mtt --seeds 3

MTT needs its expert buffer first (the recipe says how many): `ladd experts --num-experts 5 --epochs 10`.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from ladd import pipeline
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--methods", nargs="+", default=["random", "herding", "dm", "dc", "dsa", "mtt"])
    p.add_argument("--model", default="convnet")
    p.add_argument("--eval-model", default="convnet-w64")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--crops-per-step", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/bench/image_methods.json"))
    args = p.parse_args()

    runtime = Runtime.from_name(args.device)
    src = pipeline.SourceConfig(dataset=args.dataset)
    data = pipeline.load_source(src)
    label_cfg = pipeline.LabelConfig(labeler=ExpertConfig(model=args.eval_model, epochs=10))
    cfg = EvalConfig(methods=("baseline", "ladd"), models=(args.eval_model,), seeds=args.seeds,
                     epochs=args.epochs, crops_per_step=args.crops_per_step)
    # Rows already in --out are kept and their (IPC, method) skipped: a long run resumes where it stopped.
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    done = {(r["ipc"], r["images"]) for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for ipc in args.ipc:
        for method in args.methods:
            if (ipc, method) in done:
                continue
            t0 = time.perf_counter()
            art = pipeline.distill(data, src, pipeline.ImagesConfig(method=method, ipc=ipc, model=args.model), runtime)
            distill_s = time.perf_counter() - t0
            art = pipeline.label(art, data, label_cfg, runtime)
            for row in evaluate(art, data, cfg, runtime):
                recipe = art.manifest["images"].get("recipe") or {}
                row.update(images=method, recipe=recipe.get("name"), distill_seconds=distill_s,
                           distill_iterations=recipe.get("params", {}).get("iterations"),
                           peak_rss_mb_so_far=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
                rows.append(row)
                print(f"IPC {ipc:>3} {method:<8} {row['method']:<8} {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}"
                      f"  distill {distill_s:.0f} s", flush=True)
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
            tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
