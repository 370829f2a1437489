"""Every image method with hard labels, the labeler's global soft labels and LADD's dense labels,
over IPC and seeds, on one dataset: accuracy mean ± std, bytes, FLOPs, distillation seconds, peak
memory and (with --robust) DD-Ranking's LRS/ARS of the LADD labels. Prints a line per row and
writes a JSON summary plus, per (IPC, method), a run folder `--runs/ipc<IPC>-<method>/` with the
artifact and its results.json, so `ladd report --runs/*` draws the plots.

    python benchmarks/image_methods.py --ipc 1 10 --seeds 3 --robust --out runs/bench/image_methods.json

MTT needs its expert buffer first (the recipe says how many): `ladd experts --num-experts 5 --epochs 10`.
A run folder that holds results.json is kept, so an interrupted benchmark resumes per (IPC, method),
and an interrupted distillation continues from its last checkpoint.
With --robust, the accuracies that do not depend on the images (full-data students, the random
real subset with the same labels) are measured once per IPC and reused for every method, also
across processes sharing --runs (run --methods in parallel processes to use more cores).
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace
from pathlib import Path

import torch

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.io import command_line, read_json, write_json
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate, robustness
from ladd.experts import ExpertConfig
from ladd.report.results import eval_notes, robustness_note, write_results


def shared_reference(runs: Path, ipc: int, real_epochs: int) -> dict | None:
    """Robustness accuracies already measured with the same `real_epochs` (e.g. by a second
    benchmark process given other --methods and the same --runs): all three from a method at
    this IPC, else the full-data students' (which do not depend on the IPC) from any."""
    same, other = None, None
    for path in sorted(runs.glob("ipc*-*/results.json")):
        scores = read_json(path, f"delete {path.parent} to redo it").get("robustness") or {}
        if scores.get("real_epochs") != real_epochs:
            continue
        if path.parent.name.startswith(f"ipc{ipc}-"):
            same = same or scores["accs"]
        else:
            other = other or {"real_hard": scores["accs"]["real_hard"]}
    return same or other


def add_robustness(
    run: Path, art, data, cfg: EvalConfig, rows: list[dict], config: dict, notes: list[str], title: str, args, runtime: Runtime
) -> None:
    """DD-Ranking's scores of the run's LADD labels, reusing what other runs already measured."""
    ipc = art.manifest["ipc"]
    scores = robustness(
        art,
        pipeline.random_counterpart(art, data, runtime),
        data,
        cfg,
        runtime,
        args.real_epochs,
        rows,
        reference=shared_reference(run.parent, ipc, args.real_epochs),
    )
    notes = [*notes, robustness_note(scores)]
    print(f"IPC {ipc:>3} {run.name}: {notes[-1]}", flush=True)
    write_results(run, rows, config, notes, title, {"robustness": scores})


def add_distill_flops(run: Path, done: dict, data, src, cfg: EvalConfig, title: str, args, runtime: Runtime) -> None:
    """Rows written before ladd counted the images' FLOPs: re-make the images (a learned method
    continues from its finished checkpoint and counts one more, unapplied iteration), check they
    are the stored ones, and add their FLOPs to the rows and the artifact — no student retrained."""
    art = load_artifact(run / "artifact")
    made = art.manifest["images"]
    images = pipeline.ImagesConfig(method=made["method"], ipc=made["ipc"], seed=made["seed"], model=made["model"])
    again = pipeline.distill(data, src, pipeline.continuing(data, images), runtime)
    if not torch.equal(again.images, art.images):
        raise SystemExit(f"{run}: re-made images differ from the stored ones; delete {run} to redo it")
    flops = again.manifest["images"]["flops"]
    art = replace(art, manifest={**art.manifest, "images": {**made, "flops": flops}})
    save_artifact(run / "artifact", art)
    for row in done["rows"]:
        row.update(flops_distill=flops, flops=flops + row["flops_labels"] + row["flops_deploy"])
    scores = done.get("robustness")
    done["notes"] = eval_notes(art, cfg, done["rows"]) + ([robustness_note(scores)] if scores else [])
    write_results(run, done["rows"], done["config"], done["notes"], title, {"robustness": scores} if scores else None)
    print(f"{run.name}: images cost {flops:.3g} FLOPs", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--methods", nargs="+", default=["random", "herding", "dm", "dc", "dsa", "mtt"])
    p.add_argument("--labels", nargs="+", default=["baseline", "soft", "ladd"], help="evaluation methods (label terms)")
    p.add_argument("--model", default="convnet", help="network the learned methods distill with")
    p.add_argument("--eval-model", default="convnet-w64", help="students, and the labeler (10 epochs)")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--crops-per-step", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--robust", action="store_true", help="also DD-Ranking's HLR/IOR/LRS/ARS of the LADD labels")
    p.add_argument("--real-epochs", type=int, default=30, help="--robust: epochs of the full-data students")
    p.add_argument("--device", default="auto")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default: beside --out, named after it)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/image_methods.json"))
    args = p.parse_args()
    runs = args.runs or args.out.with_suffix("")

    runtime = Runtime.from_name(args.device)
    src = pipeline.SourceConfig(dataset=args.dataset)
    data = pipeline.load_source(src)
    label_cfg = pipeline.LabelConfig(labeler=ExpertConfig(model=args.eval_model, epochs=10))
    cfg = EvalConfig(
        methods=tuple(args.labels), models=(args.eval_model,), seeds=args.seeds, epochs=args.epochs, crops_per_step=args.crops_per_step
    )
    rows = []
    for ipc in args.ipc:
        for method in args.methods:
            run = runs / f"ipc{ipc}-{method}"
            title = f"image_methods · {args.dataset} · IPC {ipc} · {method}"
            if (run / "results.json").is_file():
                done = read_json(run / "results.json", f"delete {run} to redo it")
                if "flops_distill" not in done["rows"][0]:
                    add_distill_flops(run, done, data, src, cfg, title, args, runtime)
                if args.robust and "robustness" not in done:  # rows written, scores not yet: add them
                    art = load_artifact(run / "artifact")
                    add_robustness(run, art, data, cfg, done["rows"], done["config"], done["notes"], title, args, runtime)
                rows += done["rows"]
                continue
            t0 = time.perf_counter()
            images = pipeline.continuing(data, pipeline.ImagesConfig(method=method, ipc=ipc, model=args.model))
            art = pipeline.distill(data, src, images, runtime)
            distill_s = time.perf_counter() - t0
            art = pipeline.label(art, data, label_cfg, runtime)
            save_artifact(run / "artifact", art)
            made = evaluate(art, data, cfg, runtime)
            recipe = art.manifest["images"].get("recipe") or {}
            for row in made:
                row.update(
                    images=method,
                    recipe=recipe.get("name"),
                    distill_seconds=distill_s,
                    distill_iterations=recipe.get("params", {}).get("iterations"),
                    peak_rss_mb_so_far=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                )
                print(
                    f"IPC {ipc:>3} {method:<8} {row['method']:<8} {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}"
                    f"  distill {distill_s:.0f} s",
                    flush=True,
                )
            config = {
                "artifact": str(run / "artifact"),
                "eval": cfg.model_dump(),
                "benchmark": "image_methods.py",
                "images": {"method": method, "ipc": ipc, "recipe": recipe.get("name")},
            }
            notes = eval_notes(art, cfg, made)
            write_results(run, made, config, notes, title)  # kept if the robustness scores below are interrupted
            if args.robust:
                add_robustness(run, art, data, cfg, made, config, notes, title, args, runtime)
            rows += made
            write_json(args.out, {"command": command_line(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    write_json(args.out, {"command": command_line(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    print(f"wrote {args.out} and {runs}/ipc*-*/ (ladd report {runs}/ipc*)")


if __name__ == "__main__":
    main()
