"""Looking at results and artifacts: `ladd report`, `gradcam`, `export`, `teachers` and `info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ladd.cli.options import (
    ArtifactArg,
    DEFAULT_MODEL,
    DataDir,
    Device,
    EvalEpochs,
    EvalLr,
    Protocol_,
    QUICK,
    checked,
    ints_from_zero,
    model_names,
    split,
    trains,
    whole_numbers,
)
from ladd.cli.common import open_artifact
from ladd.artifact import describe, load_artifact
from ladd.core.errors import ConfigError
from ladd.core.io import write_json
from ladd.core.limits import (
    MAX_GRID_IMAGES,
    MAX_INDEX,
)
from ladd.core import logs
from ladd.core.progress import console, log
from ladd.core.runtime import Runtime, Speed


app = typer.Typer()


def print_schema(wanted: bool) -> None:
    """--schema prints and exits as soon as it is read (eager), before the report's --out is checked."""
    if wanted:
        from ladd.eval.rows import row_schema

        typer.echo(row_schema(), nl=False)
        raise typer.Exit()


@app.command()
def report(
    runs: Annotated[Optional[list[Path]], typer.Argument(help="Run folders holding results.json (from `ladd eval` or `ladd run`).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("runs/report"),
    images: Annotated[
        int, typer.Option("--images", min=1, max=MAX_GRID_IMAGES, help="Synthetic images shown per class in each run's image grid.")
    ] = 4,
    schema: Annotated[
        bool,
        typer.Option(
            "--schema", is_eager=True, callback=print_schema, help="Print the JSON Schema of a results.json row and exit (no RUNS)."
        ),
    ] = False,
):
    """Compare runs side by side: markdown, CSV and JSON tables; accuracy vs IPC, bytes (Pareto front)
    and FLOPs; per-class accuracy; image grids with top soft labels and LADD's N×N dense labels."""
    from ladd.report.build import build_report

    if not runs:
        raise ConfigError("give the run folders to report (RUNS), or --schema")
    written = build_report(runs, out, images=images)
    log(f"wrote {len(written)} files to {out}: " + ", ".join(p.name for p in written))


@app.command()
@trains
def gradcam(
    artifact: ArtifactArg,
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated evaluation methods; one student each (seed 0), e.g. baseline,ladd.")
    ] = "baseline,ladd",
    model: Annotated[
        str, typer.Option("--model", parser=checked("--model", model_names, "--model"), help="Student architecture.")
    ] = DEFAULT_MODEL,
    protocol: Protocol_ = QUICK.protocol,
    epochs: EvalEpochs = None,
    lr: EvalLr = None,
    test_images: Annotated[
        str,
        typer.Option(
            "--test-images",
            parser=checked("--test-images", whole_numbers, "--test-images", "0,1,2", 0, MAX_INDEX),
            help="Comma-separated indices into the real test split.",
        ),
    ] = "0,1,2,3,4,5,6,7",
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for gradcam_<method>.png.")] = Path("runs/gradcam"),
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Grad-CAM maps of students trained on the artifact, on chosen test images (LADD Fig. 4)."""
    from ladd.report.gradcam import student_figures

    art, _, dataset = open_artifact(artifact, data_dir)
    with logs.to_file(out / "ladd.log"):
        runtime = Runtime.from_name(device, speed)
        index = ints_from_zero(test_images, "--test-images", len(dataset.test))
        methods = split(methods, "--methods")
        for path in student_figures(art, dataset, methods, split(model)[0], protocol, index, out, runtime, epochs=epochs, lr=lr):
            log(f"wrote {path}")


@app.command("export")
def export_(
    artifact: ArtifactArg,
    format: Annotated[
        str, typer.Option("--format", help="pt (DD-Ranking images.pt + labels.pt), npz, or folder (class subfolders of PNGs).")
    ] = "pt",
    out: Annotated[Path, typer.Option("--out", help="File (npz) or folder (pt, folder) to create; must not exist.")] = Path("export"),
):
    """Export an artifact for other tools; `ladd distill --images import --import-path OUT` reads it back."""
    from ladd.artifact.export import export

    path = export(load_artifact(artifact), out, format)
    log(f"wrote {format} export of {artifact} to {path}")


@app.command()
def teachers(
    directory: Annotated[
        Optional[list[Path]], typer.Argument(help="Folders to search for trained networks (default: the expert cache).")
    ] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the listing as JSON to this file.")] = None,
):
    """List every trained teacher / labeler / expert: dataset, classes, normalization, seed, test accuracy, checksum."""
    from rich.table import Table

    from ladd.experts import registry

    rows = registry(directory)
    table = Table(title=f"{len(rows)} trained networks")
    for col in ("dataset", "model", "seed", "epochs", "classes", "mean / std", "test acc %", "sha256", "directory"):
        table.add_column(col)
    for r in rows:
        norm = "/".join(f"{m:.3f}" for m in r["mean"]) + " / " + "/".join(f"{s:.3f}" for s in r["std"])
        acc = "incomplete" if not r["complete"] else ("—" if r["test_acc"] is None else f"{100 * r['test_acc']:.2f}")
        table.add_row(
            r["dataset"],
            r["model"],
            str(r["seed"]),
            str(r["epochs"]),
            str(r["classes"]),
            norm,
            acc,
            (r["final_sha256"] or "—")[:12],
            r["directory"],
        )
    console.print(table)
    if json_out is not None:
        write_json(json_out, {"networks": rows})


@app.command()
def leaderboard(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders holding results.json (`ladd eval`, `ladd run`); folders without one yet are skipped.")
    ],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the leaderboard as JSON to this file.")] = None,
):
    """Best configuration per dataset, IPC, label method and validation split, chosen on validation accuracy only.

    A row's validation accuracy is its chosen student lr's (`ladd eval --select-lr`, one candidate
    is enough); rows evaluated without one are listed as unranked, never chosen on test accuracy.
    Rows scored on different validation splits (`--val-per-class`) are not ranked against each other."""
    from rich.table import Table

    from ladd.report.leaderboard import leaderboard as rank

    board = rank(runs)
    for d in board["skipped"]:
        console.print(f"skipped {d}: no results.json yet (an evaluation still running?)", markup=False, highlight=False, soft_wrap=True)
    table = Table(title=f"best of {len(board['entries'])} rows in {len(runs) - len(board['skipped'])} runs, chosen on validation")
    for col in ("#", "dataset", "IPC", "method", "images", "student", "val split", "val %", "test %", "seeds", "KB", "MFLOPs"):
        table.add_column(col)
    for i, e in enumerate(board["best"], 1):
        table.add_row(
            str(i),
            e["dataset"],
            str(e["ipc"]),
            e["method"],
            str(e["images_method"]),
            e["model"],
            e["val_split"].removeprefix(f"{e['dataset']}-"),
            f"{100 * e['val_acc']:.2f}",
            f"{100 * e['acc_mean']:.2f} ± {100 * e['acc_std']:.2f}",
            str(e["n_seeds"]),
            f"{e['bytes'] / 1024:.1f}",
            f"{e['flops'] / 1e6:,.0f}",
        )
    console.print(table)
    for i, e in enumerate(board["best"], 1):
        console.print(f"{i}. {e['command'] or '(command not recorded)'}  # {e['run_dir']}", markup=False, highlight=False, soft_wrap=True)
        if e["val_ties"]:
            console.print(
                f"   ties on validation with {e['val_ties']} other row(s): the one with fewer bytes, then FLOPs, is shown "
                "(a larger --val-per-class can tell them apart)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    for u in board["unranked"]:
        console.print(
            f"unranked: {u['dataset']} IPC {u['ipc']} {u['method']}: {u['candidates']} row(s) without a validation accuracy "
            "(evaluate with --select-lr)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if json_out is not None:
        write_json(json_out, board)


@app.command()
def info(artifact: ArtifactArg):
    """Verify an artifact (hashes, shapes, label validity) and summarize what it stores."""
    header, *lines = describe(load_artifact(artifact, complete=True))
    console.print(f"[bold]{artifact}[/] · {header} · hashes verified")
    for line in lines:
        console.print(line)
