"""`ladd leaderboard RUN_DIR...`: the best configuration per (dataset, IPC, label method), chosen on
validation accuracy only, with its test accuracy, bytes, FLOPs and the command that made it.

A row's validation accuracy is that of its chosen student lr (`--select-lr`: every candidate is
scored on a split carved from the training set, so one candidate is enough to give a score). Rows
evaluated without one are listed as unranked, never chosen: choosing on the test accuracy would
report the best of several test draws. Validation accuracies are compared only within one split
(`--val-per-class` and its seed name it): a row scored on another split is the best of its own, not
ranked against these. Derived rows (rounded pixels, equal-cost budgets) are left
out: they answer another question than "which configuration is best".
"""

from __future__ import annotations

from pathlib import Path

from ladd.core.errors import ArtifactError
from ladd.report.build import Run, load_run

COLUMNS = ("dataset", "ipc", "method", "images_method", "model", "val_acc", "acc_mean", "acc_std", "n_seeds", "bytes", "flops")


def val_acc(row: dict) -> float | None:
    """The validation accuracy of the row's chosen lr, None when the row was not validated."""
    chosen = row.get("lr_selection")
    return None if chosen is None else chosen["val_acc_by_lr"].get(f"{chosen['chosen']:g}")


def _entry(row: dict, command: str | None) -> dict:
    return {
        **{k: row.get(k) for k in ("dataset", "ipc", "method", "images_method", "model", "acc_mean", "acc_std", "n_seeds", "flops")},
        "val_acc": val_acc(row),
        "val_split": row["lr_selection"]["on"] if row.get("lr_selection") else None,
        "bytes": row["image_bytes_zip"] + row["label_bytes_zip"],
        "epochs": row["epochs"],
        "protocol": row["protocol"],
        "run_dir": row["run_dir"],
        "command": command,
    }


def candidates(run: Run) -> list[dict]:
    """A run's rows that compete, as entries with the command that made them."""
    derived = ("rounded_of", "equal_flops_of", "budget")
    return [_entry(r, run.command) for r in run.rows if not any(r.get(k) for k in derived)]


def leaderboard(run_dirs: list[Path]) -> dict:
    """The candidates of these runs, ranked (`rank`), with "skipped": the folders that hold no
    results.json yet. A glob over a sweep still running (`runs/sweep/*`) names cells whose students
    are training; they are left out rather than stopping the ranking of the finished ones."""
    run_dirs = [Path(d) for d in run_dirs]
    for d in run_dirs:
        if not d.is_dir():
            raise ArtifactError(f"{d} is not a folder: pass run folders written by `ladd eval` or `ladd run`")
    finished = [d for d in run_dirs if (d / "results.json").is_file()]
    if not finished:
        raise ArtifactError(f"none of the {len(run_dirs)} folder(s) holds a results.json: pass folders written by `ladd eval`/`ladd run`")
    board = rank([e for d in finished for e in candidates(load_run(d))])
    return {**board, "skipped": [str(d) for d in run_dirs if d not in finished]}


def rank(entries: list[dict]) -> dict:
    """{"best": one entry per (dataset, IPC, method, validation split), the highest validation
    accuracy (ties: fewer bytes, then fewer FLOPs; `val_ties` counts the rows it tied with, which
    validation could not tell apart), "unranked": (dataset, IPC, method) groups with no validated
    row, "entries": every candidate considered}."""
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        groups.setdefault((e["dataset"], e["ipc"], e["method"]), []).append(e)
    best, unranked = [], []
    for key in sorted(groups):
        validated = [e for e in groups[key] if e["val_acc"] is not None]
        for split in sorted({e["val_split"] for e in validated}):
            pool = [e for e in validated if e["val_split"] == split]
            chosen = max(pool, key=lambda e: (e["val_acc"], -e["bytes"], -e["flops"]))
            best.append({**chosen, "val_ties": sum(e is not chosen and e["val_acc"] == chosen["val_acc"] for e in pool)})
        if not validated:
            unranked.append({"dataset": key[0], "ipc": key[1], "method": key[2], "candidates": len(groups[key])})
    return {"best": best, "unranked": unranked, "entries": entries}
