"""`ladd report RUN_DIR...`: several runs' results.json side by side, as tables and plots.

Every number comes from the runs' results.json rows (nothing is recomputed), so a report can be
rebuilt any time and checked against its sources. Writes into the output folder:

    report.md / report.csv / report.json   one row per (run, method, model, IPC)
    acc_vs_ipc.png        accuracy (± std) against images per class, one line per run · method · model
    acc_vs_bytes.png      accuracy against stored bytes (images + labels, zip) with the Pareto front
    acc_vs_flops.png      accuracy against FLOPs (images + labels + one student)
    per_class.png         per-class test accuracy of every row
    cross_arch.png        with several evaluation models: images distilled with A × evaluated on B
    images_<run>.png      the run's synthetic images with their top soft labels (when the run kept its artifact)
    crops_<run>.png       LADD runs: one image's N×N sub-images with the top class of each dense label
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ladd.core.errors import LaddError
from ladd.core.io import read_json, write_json, write_text
from ladd.report import plots
from ladd.report.tables import REPORT_COLUMNS, markdown


def load_runs(run_dirs: list[Path]) -> list[dict]:
    """Rows of every run, each tagged with its run's name; robustness scores joined onto the row
    of the method and model they were computed for."""
    rows = []
    for run in run_dirs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise LaddError(f"{run} has no results.json: pass folders written by `ladd eval` or `ladd run`")
        results = read_json(path, "re-run `ladd eval` into that folder")
        if "rows" not in results:
            raise LaddError(f"{path} holds no result rows (an experiment's results?): pass `ladd eval`/`ladd run` folders")
        robust = results.get("robustness")
        made = results.get("config", {}).get("images", {}).get("method")  # `ladd run` rows of older versions lack it
        for row in results["rows"]:
            row = {**row, "run": Path(run).name, "run_dir": str(run)}
            row["images_method"] = row.get("images_method") or made
            if robust and (robust["method"], robust["model"]) == (row["method"], row["model"]):
                row.update({k: robust[f"{k}_mean"] for k in ("hlr", "ior", "lrs", "ars")})
            rows.append(row)
    return rows


def build_report(run_dirs: list[Path], out: Path, *, images: int = 4) -> list[Path]:
    rows = load_runs(run_dirs)
    if not rows:
        raise LaddError("the runs hold no result rows")
    out = Path(out)
    notes = [f"runs: {', '.join(str(r) for r in run_dirs)}",
             "accuracy: as each run reports it (final epoch, real test split, mean ± population std over seeds); protocol per row",
             "KB = 1024 B after zip DEFLATE; LRS/ARS: DD-Ranking scores in % (only rows evaluated with `ladd eval --robust`)"]
    write_text(out / "report.md", "# ladd report\n\n" + markdown(rows, notes, REPORT_COLUMNS)
               + "\n![accuracy vs IPC](acc_vs_ipc.png)\n![accuracy vs bytes](acc_vs_bytes.png)\n"
               "![accuracy vs FLOPs](acc_vs_flops.png)\n![per-class accuracy](per_class.png)\n")
    write_csv(rows, out / "report.csv")
    write_json(out / "report.json", {"runs": [str(r) for r in run_dirs], "rows": rows, "notes": notes})
    written = [out / "report.md", out / "report.csv", out / "report.json"]
    written += plots.report_plots(rows, out)
    for run in run_dirs:
        written += plots.artifact_figures(Path(run), out, images)
    return written


CSV_FIELDS = ("run", "method", "model", "dataset", "ipc", "protocol", "acc_mean", "acc_std", "n_seeds", "image_bytes_zip",
              "label_bytes_zip", "flops_distill", "flops_labels", "flops_deploy", "flops", "epochs", "lr", "lr_source", "hlr", "ior", "lrs", "ars")


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


__all__ = ["build_report", "load_runs"]
