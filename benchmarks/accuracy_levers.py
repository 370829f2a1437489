"""Which lever moves LADD's accuracy: one lever at a time (or a '+'-joined combination of them)
around a base configuration, on one image artifact, every cell's student lr chosen on a validation
split (`--select-lr`) and the best cell per method chosen on validation accuracy only (`ladd
leaderboard`); the test split is read once per final student. Each cell is a run folder under --runs
(a re-run skips the cells already there), and the JSON lists every cell's validation and test
accuracy and wall time (labelling and all its students).

    ladd distill --dataset mnist5k --ipc 1 --out runs/levers/ipc1/images
    python benchmarks/accuracy_levers.py --images runs/levers/ipc1/images \\
        --sweep grid=3,5,7 coverage=0.5,0.75 temperature=2,4 local_weight=0.5,2 labeler_epoch=2,5 \\
        --select-lr 0.003 0.01 0.03 --out docs/results/levers_ipc1.json

Levers: grid (N), coverage (R), temperature, labeler_epoch, ensemble, keep_soft (true: the global soft
labels MTT learned with the images stay, `--methods global-soft+local-dense` reads them); the labeler's
architecture and recipe: labeler_model, labeler_lr, labeler_decay (true: its lr ×0.1 after half its epochs);
local_weight, ema, model, epochs, crops, protocol (students: dc's step schedule vs glad's cosine).
`--sweep grid=7+local_weight=2` is one cell with both levers moved. A cell that moves only label
levers, local_weight or crops trains no hard-label baseline (its students are the base cell's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ladd import api
from ladd.core.io import command_line, write_json
from ladd.core.progress import sitting
from ladd.pipeline import source_of
from ladd.report.build import load_run
from ladd.report.leaderboard import candidates, rank

LABEL_LEVERS = {
    "grid": "n",
    "coverage": "r",
    "temperature": "temperature",
    "labeler_epoch": "epoch",
    "ensemble": "ensemble",
    "keep_soft": "keep_soft",
}
LABELER_LEVERS = {"labeler_model": "model", "labeler_lr": "lr", "labeler_decay": "decay"}  # the labeler's own recipe
LOCAL_LEVERS = ("local_weight", "crops")  # student levers of the local-view terms only
NO_BASELINE = {*LABEL_LEVERS, *LABELER_LEVERS, *LOCAL_LEVERS}  # levers the hard-label students do not see
EVAL_LEVERS = {
    "local_weight": "local_weight",
    "ema": "ema",
    "model": "models",
    "epochs": "epochs",
    "crops": "crops_per_step",
    "protocol": "protocol",
}


def _value(lever: str, text: str):
    if lever == "model":
        return (text,)
    if lever in ("protocol", "labeler_model") or (lever == "local_weight" and text == "learned"):
        return text
    if lever in ("keep_soft", "labeler_decay"):
        if text not in ("true", "false"):
            raise SystemExit(f"--sweep {lever}={text}: give true or false")
        return text == "true"
    if lever in ("grid", "ensemble", "epochs"):
        return int(text)
    if lever == "crops":
        return text if text in ("all", "auto") else int(text)
    return float(text)


def _lever(item: str, text: str) -> tuple[str, str]:
    lever, _, values = text.partition("=")
    if lever not in LABEL_LEVERS and lever not in LABELER_LEVERS and lever not in EVAL_LEVERS:
        known = ", ".join([*LABEL_LEVERS, *LABELER_LEVERS, *EVAL_LEVERS])
        raise SystemExit(f"--sweep {item}: unknown lever {lever!r}; choose from {known}")
    return lever, values


def _cells(sweep: list[str]) -> list[tuple[str, dict]]:
    """(cell name, {lever: value}) for the base, each value of a `LEVER=V1,V2` item and each
    `LEVER=V+LEVER=V` combination."""
    cells = [("base", {})]
    for item in sweep:
        if "+" in item:
            moved = dict(_lever(item, part) for part in item.split("+"))
            if any("," in v for v in moved.values()):
                raise SystemExit(f"--sweep {item}: a '+' combination takes one value per lever")
            cells.append((item, {lever: _value(lever, v) for lever, v in moved.items()}))
        else:
            lever, values = _lever(item, item)
            cells += [(f"{lever}={v}", {lever: _value(lever, v)}) for v in values.split(",")]
    return cells


def _cell_command(name: str) -> str:
    """The command that makes one cell (and the base, which every sweep holds): this one with its
    `--sweep` items replaced by the cell's name, so a leaderboard row says how to make its number."""
    args, in_sweep = [], False
    for arg in sys.argv[1:]:
        if arg == "--sweep" or arg.startswith("--sweep="):
            in_sweep = arg == "--sweep"
        elif in_sweep and not arg.startswith("-"):
            continue  # one of the sweep's items
        else:
            in_sweep = False
            args.append(arg)
    return command_line(args + ([] if name == "base" else ["--sweep", name]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, required=True, help="an artifact from `ladd distill` (its labels are replaced per cell)")
    p.add_argument("--sweep", nargs="*", default=[], help="LEVER=V1,V2,... (one lever varied at a time around the base)")
    label, labeler = api.LabelConfig(), api.ExpertConfig()  # the base's defaults are ladd's
    p.add_argument("--grid", type=int, default=label.n)
    p.add_argument("--coverage", type=float, default=label.r)
    p.add_argument("--labeler-epochs", type=int, default=labeler.epochs)
    p.add_argument("--labeler-model", default=labeler.model)
    p.add_argument("--preset", default="quick")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (default: the preset's protocol's)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--select-lr", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--methods", default="baseline,ladd")
    p.add_argument("--runs", type=Path, default=None, help="cell run folders (default: beside --images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    runs = args.runs or args.images.parent / "cells"
    art0 = api.load_artifact(args.images, complete=True)
    data = api.load_dataset(source_of(art0))
    runtime = api.runtime(args.device)
    base_label = api.LabelConfig(
        n=args.grid, r=args.coverage, labeler=api.ExpertConfig(model=args.labeler_model, epochs=args.labeler_epochs)
    )
    base_eval = {
        "methods": tuple(args.methods.split(",")),
        "seeds": args.seeds,
        "select_lr": tuple(args.select_lr),
        "val_per_class": args.val_per_class,
        **({"epochs": args.epochs} if args.epochs else {}),
    }
    entries, done = [], []
    for name, moved in _cells(args.sweep):
        folder = runs / name
        label_cfg, eval_cfg = base_label, dict(base_eval)
        for lever, value in moved.items():
            if lever in LABELER_LEVERS:  # another architecture (the soft-label paper's swap) or training recipe labels
                label_cfg = label_cfg.model_copy(update={"labeler": label_cfg.labeler.model_copy(update={LABELER_LEVERS[lever]: value})})
            elif lever in LABEL_LEVERS:
                label_cfg = label_cfg.model_copy(update={LABEL_LEVERS[lever]: value})
            else:
                eval_cfg[EVAL_LEVERS[lever]] = value
        if moved and all(lever in NO_BASELINE for lever in moved):  # the hard-label students are the base's
            eval_cfg["methods"] = tuple(m for m in eval_cfg["methods"] if m != "baseline")
        if (folder / "results.json").is_file():
            if not torch.equal(api.load_artifact(folder / "artifact").images, art0.images):
                raise SystemExit(f"{folder} holds a cell of other images than {args.images}: give another --runs")
        else:
            with api.checkpointing(folder / "students"):  # a killed cell resumes its students
                with sitting(folder / "wall.json") as clock:  # and adds its wall time to the earlier sittings'
                    labelled = api.label(art0, data, label_cfg, runtime)
                    api.save_artifact(folder / "artifact", labelled)
                    cfg = api.eval_config(args.preset, **eval_cfg)
                    rows = api.evaluate(labelled, data, cfg, runtime)
                api.save_results(
                    folder,
                    rows,
                    labelled,
                    folder / "artifact",
                    cfg,
                    f"levers · {name}",
                    config={"label": label_cfg.model_dump(), "cell": name, "seconds": clock["wall_s"], "sittings": clock["sittings"]},
                    command=_cell_command(name),
                )
        run = load_run(folder)
        cell = candidates(run)
        entries += cell
        for e in cell:
            line = {
                "cell": name,
                "levers": moved,
                "method": e["method"],
                "val_acc": e["val_acc"],
                "acc_mean": e["acc_mean"],
                "acc_std": e["acc_std"],
                "n_seeds": e["n_seeds"],
                "bytes": e["bytes"],
                "flops": e["flops"],
                "cell_seconds": run.config.get("seconds"),  # labelling + every student of the cell, over its sittings
            }
            done.append(line)
            print(
                f"{name:24s} {e['method']:10s} val {100 * e['val_acc']:.2f}  test {100 * e['acc_mean']:.2f} ± {100 * e['acc_std']:.2f}",
                flush=True,
            )
        best = rank(entries)["best"]
        write_json(
            args.out,
            {
                "command": command_line(),
                "images": str(args.images),
                "image_method": art0.manifest["images"]["method"],
                "image_params": art0.manifest["images"].get("params") or {},  # `ladd distill --param` over its recipe
                "dataset": data.name,
                "ipc": art0.manifest["ipc"],
                "base": {"label": base_label.model_dump(), "eval": {**base_eval, "preset": args.preset}},
                "selected_on": "validation accuracy of each cell's chosen lr (val_acc); test read once per final student",
                "cells": done,
                "best": [{k: b[k] for k in ("method", "run_dir", "val_acc", "acc_mean", "acc_std", "command")} for b in best],
            },
        )


if __name__ == "__main__":
    main()
