"""The soft-label baseline against hard labels across IPC (the paper's Tables 1–2 in miniature):
the same random real images, trained on with hard labels, with one early-stopped expert's soft
labels, and optionally with an ensemble's."""

from __future__ import annotations

from pathlib import Path

from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, soft_labeled, students, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.experiments.expert_epoch import resolve_epoch, selection_curve, selection_dir


def run(dataset: Dataset, setup: Setup, ipcs: list[int], epoch, ensemble: int, runtime: Runtime, out: Path) -> list[dict]:
    cells = Cells(out, setup)
    rows = []
    for ipc in ipcs:
        chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
        art = real_images(dataset, setup, ipc)
        row = {"ipc": ipc, "expert_epoch": chosen}
        if epoch == "auto":  # what the choice was made from: student validation accuracy per expert epoch
            row["selection"] = [
                {k: r[k] for k in ("epoch", "expert_val_acc", "acc_mean")}
                for r in selection_curve(dataset, setup, ipc, runtime, selection_dir(out))
            ]
        row["hard"] = cells.run(
            {"experiment": "soft-vs-hard", "ipc": ipc, "labels": "hard"}, lambda: students(art, dataset, setup, "baseline", runtime)
        )
        for k in sorted({1, ensemble}):
            row["soft" if k == 1 else f"ensemble{k}"] = cells.run(
                {"experiment": "soft-vs-hard", "ipc": ipc, "labels": "soft", "epoch": chosen, "ensemble": k},
                lambda k=k: students(soft_labeled(art, dataset, setup, runtime, epoch=chosen, ensemble=k), dataset, setup, "soft", runtime),
            )
        rows.append(row)
    variants = [v for v in ("hard", "soft", f"ensemble{ensemble}") if v in rows[0]]

    def chosen_lr(cell):
        return f" (lr {cell['lr']:g})" if setup.select_lr else ""

    table = [
        {
            "IPC": r["ipc"],
            "expert epoch": f"{r['expert_epoch']:g}",
            **{f"{v} acc %": pm_of(r[v]) + chosen_lr(r[v]) for v in variants},
            "soft label KB (zip)": f"{r['soft']['label_bytes_zip'] / 1024:.1f}",
        }
        for r in rows
    ]
    fig, ax = subplots(figsize=(6, 4))
    for v in variants:
        ax.errorbar(
            [r["ipc"] for r in rows],
            [100 * r[v]["acc_mean"] for r in rows],
            yerr=[100 * r[v]["acc_std"] for r in rows],
            fmt="o-",
            capsize=3,
            label=v,
        )
    ax.set_xscale("log")
    ax.set_xlabel("images per class")
    ax.set_ylabel(f"test accuracy % ({setup.seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{dataset.name}: random real images, hard vs expert soft labels")
    expert = setup.teacher.labeler
    notes = [
        f"images: random real, seed {setup.image_seed}; expert {expert.model}, lr {expert.lr}, {expert.epochs} epochs, "
        f"epoch per IPC {'selected on a validation split' if epoch == 'auto' else 'given'}",
        f"students: {setup.student_model}, {setup.student_epochs} epochs, final-epoch test accuracy, lr "
        + (
            f"chosen per cell among {', '.join(f'{v:g}' for v in setup.select_lr)} on the validation split"
            if setup.select_lr
            else f"{setup.student_lr}"
        ),
    ]
    write_report(
        out,
        "soft_vs_hard",
        f"Soft-label baseline vs hard labels · {dataset.name}",
        {"setup": setup.model_dump(), "rows": rows},
        table,
        notes,
        fig,
    )
    return rows
