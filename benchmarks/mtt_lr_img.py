"""MTT's image learning rate chosen per IPC on a validation split, never on the test split.

The references have no MNIST setting for MTT, and CIFAR's lr_img (100) draws strokes into
mnist5k's digits at IPC 10. Everything here runs on `holdout(dataset)`: experts are trained on
the training split minus `--val-per-class` images per class, MTT distills from those experts, and
hard-label students are scored on the held-out images, as are students of random real images
(MTT's initialization) for reference. Prints a line per (IPC, lr_img) and writes the validation
accuracies and the best lr_img per IPC as JSON.

    python benchmarks/mtt_lr_img.py --ipc 1 10 --out runs/bench/mtt_lr_img.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ladd import pipeline
from ladd.core.io import command_line, write_json
from ladd.core.runtime import Runtime
from ladd.data import holdout
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ensure_buffer
from ladd.images.recipes import load_recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--lr-img", type=float, nargs="+", default=[3.0, 10.0, 30.0, 100.0, 300.0])
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--model", default="convnet", help="network MTT distills with (and its experts)")
    p.add_argument("--eval-model", default="convnet-w64")
    p.add_argument("--epochs", type=int, default=150, help="student epochs")
    p.add_argument("--seeds", type=int, default=3, help="students per (IPC, lr_img)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/bench/mtt_lr_img.json"))
    args = p.parse_args()

    runtime = Runtime.from_name(args.device)
    src = pipeline.SourceConfig(dataset=args.dataset)
    val = holdout(pipeline.load_source(src), args.val_per_class)
    cfg = EvalConfig(methods=("baseline",), models=(args.eval_model,), seeds=args.seeds, epochs=args.epochs)
    rows, best = [], {}
    for ipc in args.ipc:
        recipe = load_recipe("mtt", args.dataset, ipc)  # by name: the held-out dataset has its own name
        # the recipe's buffer, trained on the training split minus the validation images (cached)
        ensure_buffer(val, args.model, recipe["params"]["num_experts"], recipe["params"]["expert_train_epochs"], runtime)
        for lr in args.lr_img:
            t0 = time.perf_counter()
            images = pipeline.continuing(
                val, pipeline.ImagesConfig(method="mtt", ipc=ipc, model=args.model, recipe=recipe["name"], params={"lr_img": lr})
            )
            art = pipeline.distill(val, src, images, runtime)
            seconds = time.perf_counter() - t0
            (row,) = evaluate(art, val, cfg, runtime)
            rows.append(
                {
                    "ipc": ipc,
                    "images": "mtt",
                    "lr_img": lr,
                    "val_acc_mean": row["acc_mean"],
                    "val_acc_std": row["acc_std"],
                    "distill_seconds": seconds,
                }
            )
            print(
                f"IPC {ipc:>3} lr_img {lr:g}: validation {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f} "
                f"(distill {seconds:.0f} s)",
                flush=True,
            )
        random = pipeline.distill(val, src, pipeline.ImagesConfig(method="random", ipc=ipc), runtime)
        (row,) = evaluate(random, val, cfg, runtime)
        rows.append({"ipc": ipc, "images": "random", "val_acc_mean": row["acc_mean"], "val_acc_std": row["acc_std"]})
        print(f"IPC {ipc:>3} random real images: validation {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}", flush=True)
        best[ipc] = max((r for r in rows if r["ipc"] == ipc and r["images"] == "mtt"), key=lambda r: r["val_acc_mean"])["lr_img"]
        print(f"IPC {ipc:>3}: best lr_img {best[ipc]:g} on the validation split", flush=True)
    write_json(
        args.out,
        {"command": command_line(), "args": {k: str(v) for k, v in vars(args).items()}, "dataset": val.name, "rows": rows, "best": best},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
