"""Label swap test (the paper's Fig. 4): swap each label's i-th largest probability with its
smallest, for i = 1..C, and train students on the swapped labels. Accuracy relative to the
unswapped labels shows which ranks of the soft label carry the knowledge."""

from __future__ import annotations

from pathlib import Path

from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, relabeled, soft_labeled, students, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.experiments.expert_epoch import resolve_epoch
from ladd.labels.soft import swap_kth


def run(dataset: Dataset, setup: Setup, ipc: int, epoch, runtime: Runtime, out: Path) -> list[dict]:
    cells = Cells(out, setup)
    chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
    art = soft_labeled(real_images(dataset, setup, ipc), dataset, setup, runtime, epoch=chosen)
    key = {"experiment": "swap", "ipc": ipc, "epoch": chosen}
    base = cells.run({**key, "rank": 0}, lambda: students(art, dataset, setup, "soft", runtime))
    rows = [{"rank": 0, **base, "relative": 1.0}]
    for i in range(1, dataset.num_classes + 1):
        res = cells.run(
            {**key, "rank": i}, lambda i=i: students(relabeled(art, swap_kth(art.soft_labels, i)), dataset, setup, "soft", runtime)
        )
        rows.append({"rank": i, **res, "relative": res["acc_mean"] / base["acc_mean"]})
    table = [{"swapped rank": r["rank"] or "none", "acc %": pm_of(r), "relative": f"{r['relative']:.3f}"} for r in rows]
    fig, ax = subplots(figsize=(6, 4))
    ax.plot([r["rank"] for r in rows[1:]], [r["relative"] for r in rows[1:]], "o-")
    ax.axhline(1.0, ls=":", color="gray")
    ax.set_xlabel("i: the i-th largest probability swapped with the smallest")
    ax.set_ylabel("student accuracy relative to unswapped")
    ax.grid(alpha=0.3)
    ax.set_title(f"{dataset.name} IPC {ipc}: label swap test (expert epoch {chosen:g})")
    notes = [
        "swapping permutes each label: rank 1 moves the top class to the bottom; the last rank swaps the smallest with itself (= unswapped)"
    ]
    write_report(
        out,
        "swap",
        f"Label swap test · {dataset.name} · IPC {ipc}",
        {"setup": setup.model_dump(), "ipc": ipc, "epoch": chosen, "rows": rows},
        table,
        notes,
        fig,
    )
    return rows
