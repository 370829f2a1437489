"""Remove images vs remove labels (the paper's Fig. 7): can a student recognize a class it has
no images of, from the knowledge about it in other images' soft labels? For a target class c:

- control: all images, soft labels;
- remove images: c's images dropped, every other label keeps its probability for c;
- remove labels: all images kept, c's probability zeroed in every label but c's own images'
  (as the reference's data_efficient_treat_label, no renormalization);
- hard labels without c's images: the zero-shot floor.
Reported: accuracy on class c's test images, and overall."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ladd.core.errors import ConfigError
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, relabeled, soft_labeled, students, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.experiments.expert_epoch import resolve_epoch


def without_class(art, c: int):
    keep = art.labels != c
    soft = None if art.soft_labels is None else art.soft_labels[keep]
    return replace(art, images=art.images[keep], labels=art.labels[keep], soft_labels=soft)


def without_knowledge(art, c: int):
    soft = art.soft_labels.clone()
    others = art.labels != c
    soft[others, c] = 0.0
    return relabeled(art, soft)


def run(dataset: Dataset, setup: Setup, ipc: int, target: int, epoch, runtime: Runtime, out: Path) -> list[dict]:
    if not 0 <= target < dataset.num_classes:
        raise ConfigError(f"--target-class {target} must be a class index in 0..{dataset.num_classes - 1}")
    cells = Cells(out, setup)
    chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
    art = soft_labeled(real_images(dataset, setup, ipc), dataset, setup, runtime, epoch=chosen)
    variants = {
        "control (soft)": (art, "soft"),
        "remove images (soft)": (without_class(art, target), "soft"),
        "remove labels (soft)": (without_knowledge(art, target), "soft"),
        "remove images (hard)": (without_class(art, target), "baseline"),
    }
    rows = []
    for name, (variant, method) in variants.items():
        res = cells.run(
            {"experiment": "removal", "ipc": ipc, "target": target, "epoch": chosen, "variant": name},
            lambda v=variant, m=method: students(v, dataset, setup, m, runtime),
        )
        rows.append({"variant": name, "class_acc": res["class_acc_mean"][target], **res})
    cname = dataset.class_names[target]
    table = [{"variant": r["variant"], f"class {cname!r} acc %": f"{100 * r['class_acc']:.2f}", "overall acc %": pm_of(r)} for r in rows]
    fig, ax = subplots(figsize=(7, 4))
    ax.bar([r["variant"] for r in rows], [100 * r["class_acc"] for r in rows])
    ax.set_ylabel(f"accuracy on class {cname!r} % (mean of {setup.seeds} seeds)")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"{dataset.name} IPC {ipc}: removing class {cname!r}'s images vs its label knowledge")
    notes = [
        f"target class {target} ({cname!r}); expert epoch {chosen:g}; 'remove images' trains on {ipc * (dataset.num_classes - 1)} images"
    ]
    write_report(
        out,
        "removal",
        f"Remove images vs remove labels · {dataset.name} · IPC {ipc}",
        {"setup": setup.model_dump(), "target": target, "epoch": chosen, "rows": rows},
        table,
        notes,
        fig,
    )
    return rows
