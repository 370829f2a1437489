"""Expert epoch × label temperature (the soft-label paper's Fig. 5): for an IPC, the validation
accuracy of students trained on the expert's soft labels at every (epoch, T), T in softmax(z / T).
A later checkpoint is more confident; a higher T flattens its labels again, so the two knobs
partly stand in for each other. Everything runs on the held-out split, as expert-epoch selection
does (the test split is never read); the best (epoch, T) per IPC is reported."""

from __future__ import annotations

from pathlib import Path

from matplotlib.patches import Rectangle
import numpy as np

from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.data import holdout
from ladd.experiments.common import Cells, Setup, write_report
from ladd.experiments.expert_epoch import candidate_epochs, curve, fixed_lr
from ladd.report.plots import subplots
from ladd.report.tables import pm_of


def run(dataset: Dataset, setup: Setup, ipcs: list[int], temperatures: list[float], runtime: Runtime, out: Path) -> dict:
    setup = fixed_lr(setup)
    cells, val = Cells(out, setup), holdout(dataset, setup.val_per_class)
    epochs = candidate_epochs(val, setup, runtime)
    rows = [r for ipc in ipcs for t in temperatures for r in curve(val, setup, ipc, epochs, runtime, cells, temperature=t)]
    best = {
        ipc: max((r for r in rows if r["ipc"] == ipc), key=lambda r: (r["acc_mean"], -r["epoch"], -abs(np.log(r["temperature"]))))
        for ipc in ipcs
    }  # ties: the earliest epoch, then the temperature closest to 1
    table = [
        {
            "IPC": r["ipc"],
            "expert epoch": f"{r['epoch']:g}",
            "T": f"{r['temperature']:g}",
            "label entropy": f"{r['label_entropy']:.3f}",
            "student val acc %": pm_of(r),
            "best": "✓" if r is best[r["ipc"]] else "",
        }
        for r in rows
    ]
    fig, axes = subplots(1, len(ipcs), figsize=(5.5 * len(ipcs), 4), squeeze=False)
    for ax, ipc in zip(axes[0], ipcs):
        grid = (
            np.array(
                [
                    [next(r["acc_mean"] for r in rows if (r["ipc"], r["temperature"], r["epoch"]) == (ipc, t, e)) for e in epochs]
                    for t in temperatures
                ]
            )
            * 100
        )
        im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=9, color="w" if v < grid.mean() else "k")
        b = best[ipc]
        ax.add_patch(
            Rectangle(
                (epochs.index(b["epoch"]) - 0.5, temperatures.index(b["temperature"]) - 0.5),
                1,
                1,
                fill=False,
                edgecolor="r",
                linewidth=2.5,
                label="best",
            )
        )  # a frame: the cell's number stays readable
        ax.set_xticks(range(len(epochs)), [f"{e:g}" for e in epochs], fontsize=7)
        ax.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
        ax.set_xlabel("expert epoch")
        ax.set_ylabel("temperature T")
        ax.set_title(f"IPC {ipc}")
        ax.legend(fontsize=7, loc="upper right")
        fig.colorbar(im, ax=ax, shrink=0.8, label="student validation accuracy %")
    fig.suptitle(f"{dataset.name}: expert epoch × temperature of the soft labels (validation split)")
    notes = [
        f"validation: {setup.val_per_class} training images per class held out; expert trained on the rest; the test split is never read",
        f"students: {setup.student_model}, {setup.student_epochs} epochs, lr {setup.student_lr}, {setup.seeds} seeds; "
        "labels softmax(z / T)",
        "best per IPC: "
        + ", ".join(f"IPC {i} → epoch {b['epoch']:g}, T {b['temperature']:g} ({100 * b['acc_mean']:.2f}%)" for i, b in best.items()),
    ]
    payload = {
        "setup": setup.model_dump(),
        "ipcs": ipcs,
        "temperatures": temperatures,
        "epochs": epochs,
        "best": {str(i): {"epoch": b["epoch"], "temperature": b["temperature"], "acc_mean": b["acc_mean"]} for i, b in best.items()},
        "rows": rows,
    }
    write_report(out, "epoch_temperature", f"Expert epoch × temperature · {dataset.name}", payload, table, notes, fig)
    return payload
