"""`ladd report RUN_DIR...`: several runs' results.json side by side, as tables and plots.

Every number comes from the runs' results.json rows (nothing is recomputed), so a report can be
rebuilt any time and checked against its sources. Writes into the output folder:

    report.md / report.csv / report.json   one row per (run, method, model, IPC)
    acc_vs_ipc.png        accuracy (± std) against images per class, one line per run · method · model
    acc_vs_bytes.png      accuracy against stored bytes (images + labels, zip) with the Pareto front
    acc_vs_flops.png      accuracy against FLOPs (images + labels + one student)
    per_class.png         per-class test accuracy of every row, columns named by class (a panel per class set)
    cross_arch.png        with several evaluation models: images distilled with A × evaluated on B
    images_<run>.png      the run's synthetic images with their top soft labels
    crops_<run>.png       LADD runs: one image's N×N sub-images with the top class of each dense label

The image grids need the run's artifact on disk, holding the images its rows were evaluated on
(the `artifact_sha256` they record); otherwise the report says why they are missing, and marks
the rows of a replaced artifact with † in the table.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ladd.core.errors import ArtifactError, LaddError
from ladd.core.io import fsync, read_json, staging_dir, write_json, write_text
from ladd.core.logs import logger
from ladd.eval.rows import checked_rows, results_version
from ladd.report import plots
from ladd.report.tables import CHANGED, REPORT_COLUMNS, markdown


@dataclass
class Run:
    """One results folder: its rows, and the artifact they were evaluated on (None, with the reason
    in `problem`, when its images cannot be shown)."""

    name: str
    rows: list[dict]
    artifact: Path | None
    problem: str | None
    command: str | None = None  # the command line that wrote the results
    config: dict = field(default_factory=dict)  # what the command recorded of its configuration


def find_artifact(run: Path, config: dict) -> Path | None:
    """The artifact folder of a run: `ladd run`'s own `artifact/`, else the path `ladd eval`
    recorded — absolute, or (older results) relative to the folder the command ran in, which
    went unrecorded: tried from the results folder, each folder above it, and the current one."""
    candidates = [run / "artifact"]
    if "artifact" in config:
        recorded = Path(config["artifact"]).expanduser()
        candidates += [recorded] if recorded.is_absolute() else [base / recorded for base in (run, *run.resolve().parents, Path.cwd())]
    return next((p for p in candidates if (p / "manifest.json").is_file()), None)


def load_run(run: Path) -> Run:
    """A run's rows, each tagged with its run's name and (from its artifact) its classes' names;
    robustness scores joined onto the row of the method and model they were computed for. An
    artifact whose images are not those the rows recorded (`artifact_sha256`: a later command
    replaced them) is not used, and its rows are marked `artifact_changed`. Rows are checked against
    `eval.rows` (a results.json without `schema_version` is version 0, read leniently)."""
    run = Path(run)
    path = run / "results.json"
    if not path.is_file():
        raise ArtifactError(f"{run} has no results.json: pass folders written by `ladd eval` or `ladd run`")
    results = read_json(path, "re-run `ladd eval` into that folder")
    version = results_version(results, str(path))  # before anything else: a newer version may be laid out otherwise
    if "rows" not in results:
        raise ArtifactError(f"{path} holds no result rows (an experiment's results?): pass `ladd eval`/`ladd run` folders")
    results["rows"] = checked_rows(results["rows"], version, str(path))
    config = results.get("config", {})
    artifact, problem, changed, manifest = find_artifact(run, config), None, False, {}
    try:
        manifest = {} if artifact is None else read_json(artifact / "manifest.json", f"re-run the command that wrote {artifact}")
    except LaddError as e:
        artifact, problem = None, f"{run.name}: {e}: images not shown"
    recorded = {r["artifact_sha256"] for r in results["rows"] if r.get("artifact_sha256")}
    if artifact is None:
        problem = problem or f"{run.name}: its artifact ({config.get('artifact', run / 'artifact')}) is not on disk: images not shown"
    elif recorded and recorded != {manifest.get("files", {}).get("images.safetensors", {}).get("sha256")}:
        problem = (
            f"{CHANGED} {run.name}: artifact {artifact} changed since evaluation (its images' SHA-256 is not the one "
            "results.json recorded): images not shown"
        )
        artifact, changed, manifest = None, True, {}
    robust = results.get("robustness")
    made = config.get("images", {}).get("method")  # `ladd run` rows of older versions lack it
    names = manifest.get("source", {}).get("class_names")
    rows = []
    for row in results["rows"]:
        row = {**row, "run": run.name, "run_dir": str(run), **({"artifact_changed": True} if changed else {})}
        row["images_method"] = row.get("images_method") or made
        if names and len(names) == len(row["class_acc_mean"]):
            row["class_names"] = list(names)
        if robust and (robust["method"], robust["model"]) == (row["method"], row["model"]):
            row.update({k: robust[f"{k}_mean"] for k in ("hlr", "ior", "lrs", "ars")})
        rows.append(row)
    return Run(run.name, rows, artifact, problem, results.get("command"), config)


def _name_classes(rows: list[dict]) -> None:
    """Rows whose artifact gave no class names borrow them from a row of the same dataset and
    class count, else are numbered, so rows of one dataset share one per-class panel."""
    known = {(r["dataset"], len(r["class_names"])): r["class_names"] for r in rows if "class_names" in r}
    for r in rows:
        k = len(r["class_acc_mean"])
        r.setdefault("class_names", known.get((r["dataset"], k), [str(c) for c in range(k)]))


def build_report(run_dirs: list[Path], out: Path, *, images: int = 4) -> list[Path]:
    """Every file of the report is made in a staging folder first and moved into `out` only when
    all were made, so a failure leaves `out` as it was."""
    from ladd.artifact import load_artifact

    runs = [load_run(r) for r in run_dirs]
    rows = [row for run in runs for row in run.rows]
    if not rows:
        raise ArtifactError("the runs hold no result rows")
    _name_classes(rows)
    out = Path(out)
    tmp = staging_dir(out)
    try:
        figures = plots.report_plots(rows, tmp)
        problems = [run.problem for run in runs if run.problem]
        for run in (run for run in runs if run.artifact is not None):
            try:
                art = load_artifact(run.artifact)
            except LaddError as e:
                problems.append(f"{run.name}: {e}: images not shown")
                continue
            figures += plots.artifact_figures(art, run.name, tmp, images)
        for problem in problems:
            logger.warning(problem)
        notes = [
            f"runs: {', '.join(str(r) for r in run_dirs)}",
            (
                "accuracy: as each run reports it (final epoch, real test split, mean ± population std over seeds; the mean alone "
                "for one seed); protocol per row"
            ),
            "KB = 1024 B after zip DEFLATE; LRS/ARS: DD-Ranking scores in % (only rows evaluated with `ladd eval --robust`)",
            *problems,
        ]
        write_text(
            tmp / "report.md",
            "# ladd report\n\n"
            + markdown(rows, notes, REPORT_COLUMNS)
            + "\n"
            + "".join(f"![{p.stem.replace('_', ' ')}]({p.name})\n" for p in figures),
        )
        write_csv(rows, tmp / "report.csv")
        write_json(tmp / "report.json", {"runs": [str(r) for r in run_dirs], "rows": rows, "notes": notes})
        names = ["report.md", "report.csv", "report.json"] + [p.name for p in figures]
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fsync(out)
    return [out / name for name in names]


CSV_FIELDS = (
    "run",
    "method",
    "model",
    "dataset",
    "ipc",
    "protocol",
    "acc_mean",
    "acc_std",
    "n_seeds",
    "image_bytes_zip",
    "label_bytes_zip",
    "flops_distill",
    "flops_labels",
    "flops_deploy",
    "flops",
    "epochs",
    "lr",
    "lr_source",
    "hlr",
    "ior",
    "lrs",
    "ars",
)


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


__all__ = ["build_report", "load_run"]
