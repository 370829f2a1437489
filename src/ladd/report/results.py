"""A run folder's `results.json` / `results.md` / `results.png` and the notes that say how its
numbers were made: one writer for `ladd eval`, `ladd run` and the benchmarks, so `ladd report`
reads every run the same way."""

from __future__ import annotations

from pathlib import Path

import ladd
from ladd.core import dist, track
from ladd.core.io import command_line, write_json, write_text
from ladd.cost.flops import UNIT
from ladd.eval.protocol import EvalConfig
from ladd.eval.rows import SCHEMA_VERSION, checked_rows
from ladd.report.plots import accuracy_vs_cost, flops_curves
from ladd.report.tables import markdown, pm
from ladd.train.terms import method_terms


def write_results(
    out: Path, rows: list[dict], config: dict, notes: list[str], title: str, extra: dict | None = None, command: str | None = None
) -> list[Path]:
    """results.json/.md/.png (+ flops_curve.png) into `out`; under torchrun rank 0 writes them.
    The rows are checked against `eval.rows.Row` first, so no file carries a row `ladd report` would refuse.
    `command` (default: the running one) is the command line recorded as the one that made them."""
    rows = checked_rows(rows, where=f"{out}/results.json")
    if (tracker := track.current()) is not None:  # rank 0's only
        for row in rows:
            tracker.row(row)
    return dist.first(lambda: _write(Path(out), rows, config, notes, title, extra, command or command_line()))


def _write(out: Path, rows: list[dict], config: dict, notes: list[str], title: str, extra: dict | None, command: str) -> list[Path]:
    write_json(
        out / "results.json",
        {
            "schema_version": SCHEMA_VERSION,
            "ladd_version": ladd.__version__,
            "command": command,
            "flops_unit": UNIT,
            "config": config,
            "rows": rows,
            "notes": notes,
            **(extra or {}),
        },
    )
    write_text(out / "results.md", f"# {title}\n\n" + markdown(rows, notes) + "\n![accuracy vs cost](results.png)\n")
    accuracy_vs_cost(rows, out / "results.png")
    written = [out / "results.json", out / "results.md", out / "results.png"]
    if any(r.get("curve") for r in rows):
        flops_curves(rows, out / "flops_curve.png")
        written.append(out / "flops_curve.png")
    return written


def eval_notes(art, cfg: EvalConfig, rows: list[dict]) -> list[str]:
    """Protocol, what was selected on which split, FLOPs convention, labeler and relabel provenance."""
    first = rows[0]
    overrides = ", ".join(f"{k} {v}" for k, v in first["protocol_overrides"].items())
    notes = [
        f"protocol {first['protocol']}" + (f" (overridden: {overrides})" if overrides else "") + f": {first['protocol_source']}",
        f"accuracy: {first['reported']}, after {first['epochs']} epochs, over {cfg.seeds} seeds (population std); "
        "nothing selected on test data"
        + ("; student lr chosen on a validation split carved from the training split" if cfg.select_lr else ""),
        f"{UNIT}. FLOPs = images (the method's loops and scoring passes, networks trained only for them) + labels "
        "(labeler training + label generation, methods that use the labeler) + deploy (one student)"
        + (
            ""
            if first.get("flops_distill") is not None
            else "; the images' FLOPs are unknown (imported, or made before ladd counted them): not included"
        ),
    ]
    notes += students_notes(rows)
    for r in rows:
        if "rounded_of" in r:  # eval.protocol.rounding_rows
            kept = next(k for k in rows if k["method"] == r["rounded_of"] and k["model"] == r["model"])
            notes.append(
                f"images stored as float32 (--float-images); rounded to the uint8 pixels the default stores, "
                f"{kept['method']} on {r['model']} scores {100 * r['acc_mean']:.2f} instead of {100 * kept['acc_mean']:.2f} "
                f"({100 * (r['acc_mean'] - kept['acc_mean']):+.2f} points) in {r['image_bytes_zip'] / 1024:.1f} instead of "
                f"{kept['image_bytes_zip'] / 1024:.1f} KB"
            )
    lab = art.manifest.get("labels", {}).get("labeler")
    if lab:
        members = f" × {lab['ensemble']} experts (logits averaged)" if lab.get("ensemble", 1) > 1 else ""
        notes.append(
            f"labeler: {lab['model']} epoch {lab['epoch']:g}{members}, T = {lab.get('temperature', 1.0):g}, "
            f"top-k {lab.get('top_k') or 'all'}; its own test accuracy {100 * lab['test_acc']:.2f}%"
        )
    rel = art.manifest.get("relabel")
    if rel and any("replay" in method_terms(m) for m in cfg.methods):
        notes.append(
            f"fkd: replays {rel['epochs']} stored relabel epochs × {rel['samples']} samples "
            f"({rel['dtype']} {rel['kind']}, T = {rel['temperature']:g}, "
            f"teacher {rel['teacher']['model']} epoch {rel['teacher']['epoch']:g}, test acc {100 * rel['teacher']['test_acc']:.2f}%), "
            f"keeping 1/{cfg.pruning.rho:g} of them as a {cfg.pruning.pool} pool ({cfg.pruning.metric}); lbl KB = the kept six components"
        )
    return notes


def students_notes(rows: list[dict]) -> list[str]:
    """What the students ran with, one note per distinct setting (the lr may be the protocol's, an
    override, MTT's learned one or a validation choice, so the protocol's source text alone is not enough)."""
    settings: dict[tuple, list[str]] = {}
    for r in rows:
        key = (r["model"], r["optimizer"], r["lr"], r["lr_source"], r["epochs"], r.get("batch_size"), r["schedule"])
        settings.setdefault(key, []).append(r["method"])
    return [
        f"students {model} ({', '.join(methods)}): {optimizer} lr {lr:g} ({source}), {epochs} epochs, batch {batch}, {schedule} schedule"
        for (model, optimizer, lr, source, epochs, batch, schedule), methods in settings.items()
    ] + layout_notes(rows)


def layout_notes(rows: list[dict]) -> list[str]:
    """How torchrun's ranks shared the students (`eval.protocol.train_plans`), one note per layout;
    none for one process."""
    layouts: dict[tuple, list[str]] = {}
    for r in rows:
        by = r.get("trained_by") or {}  # rows made before ladd recorded it lack it
        if by.get("ranks", 1) > 1:
            layouts.setdefault((by["layout"], by["ranks"], by["students"], by.get("why")), []).append(f"{r['method']} · {r['model']}")
    return [
        (
            f"students: {students} spread over {ranks} ranks (assignment), each trained whole by one rank; rank 0 gathered the rows"
            if layout == "assignment"
            else f"students: {students}, each trained by all {ranks} ranks (DDP, {why})"
        )
        + f": {', '.join(which)}"
        for (layout, ranks, students, why), which in layouts.items()
    ]


def robustness_note(scores: dict) -> str:
    score = {k: pm(scores[f"{k}_mean"], scores[f"{k}_std"], scores["runs"]) for k in ("hlr", "ior", "lrs", "ars")}
    return (
        f"DD-Ranking scores ({scores['method']}, {scores['model']}, {scores['runs']} runs): HLR {score['hlr']}, IOR {score['ior']}, "
        f"LRS {score['lrs']}, ARS {score['ars']} (vs random real images, seed {scores['random_images']}; "
        f"real-data students {scores['real_epochs']} epochs)"
    )
