"""Expert-epoch selection (the paper's Fig. 2 and Table 7): for an IPC, which checkpoint of the
expert makes the soft labels that train the best student?

Everything runs on `holdout(dataset)`: the expert is trained on the training split minus a
validation split, students are scored on that validation split, and the real test split is never
read. The chosen epoch is then used with the expert trained on the full training split."""

from __future__ import annotations

from pathlib import Path

from ladd.core.errors import ConfigError
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.data import holdout
from ladd import pipeline
from ladd.eval.protocol import methods_for
from ladd.experiments.common import Cells, Setup, real_images, students, teacher_config, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.labels import LABEL_METHODS
from ladd.experts import ensure_expert
from ladd.labels.soft import entropy
from ladd.train.loop import saved_epochs


def candidate_epochs(val: Dataset, setup: Setup, runtime: Runtime) -> list[float]:
    """`setup.candidate_epochs`, else every saved checkpoint of the held-out expert after
    initialization (fractions included when the expert saves them)."""
    directory, _ = ensure_expert(val, setup.teacher.labeler, None, runtime)
    saved = [e for e in saved_epochs(directory) if e > 0]
    if setup.candidate_epochs is None:
        return saved
    missing = [e for e in setup.candidate_epochs if e not in saved]
    if missing:
        raise ConfigError(
            f"candidate expert epoch(s) {', '.join(f'{e:g}' for e in missing)} were not saved: "
            f"choose among {', '.join(f'{e:g}' for e in saved)}"
        )
    return sorted(setup.candidate_epochs)


def curve(
    val: Dataset, setup: Setup, ipc: int, epochs: list[float], runtime: Runtime, cells: Cells, temperature: float = 1.0
) -> list[dict]:
    """On the held-out dataset `val`, per expert epoch: the expert's validation accuracy, its
    labels' mean entropy, and the validation accuracy of students trained on its labels (global
    soft labels, or LADD's dense labels when the teacher's method is ladd) at `temperature`."""
    art = real_images(val, setup, ipc)
    method = methods_for(LABEL_METHODS.canonical(setup.teacher.method))[-1]
    rows = []
    for epoch in epochs:

        def compute(epoch=epoch) -> dict:
            labeled = pipeline.label(art, val, teacher_config(setup, epoch, temperature=temperature), runtime)
            return {
                "expert_val_acc": labeled.manifest["labels"]["labeler"]["test_acc"],
                "label_entropy": float(entropy(labeled.soft_labels.float()).mean()),
                **students(labeled, val, setup, method, runtime),
            }

        key = {"experiment": "expert-epoch", "ipc": ipc, "epoch": epoch, **({} if temperature == 1.0 else {"temperature": temperature})}
        rows.append({"ipc": ipc, "epoch": epoch, "temperature": temperature, **cells.run(key, compute)})
    return rows


def best(rows: list[dict]) -> float:
    """The epoch with the best mean student validation accuracy (the earliest on a tie)."""
    return max(rows, key=lambda r: (r["acc_mean"], -r["epoch"]))["epoch"]


def fixed_lr(setup: Setup) -> Setup:
    """Epoch selection trains its students at `student_lr`: `select_lr` tunes the final students
    only (one validation split, not a second one carved inside it)."""
    return setup.model_copy(update={"select_lr": ()})


def select_epoch(dataset: Dataset, setup: Setup, ipc: int, runtime: Runtime, out: Path) -> float:
    """The chosen expert epoch for one IPC (cells cached under `out`)."""
    return best(selection_curve(dataset, setup, ipc, runtime, out))


def selection_curve(dataset: Dataset, setup: Setup, ipc: int, runtime: Runtime, out: Path) -> list[dict]:
    """What `select_epoch` chooses from: `curve` on the validation split over the candidate epochs."""
    setup, val = fixed_lr(setup), holdout(dataset, setup.val_per_class)
    return curve(val, setup, ipc, candidate_epochs(val, setup, runtime), runtime, Cells(out, setup))


def run(dataset: Dataset, setup: Setup, ipcs: list[int], runtime: Runtime, out: Path) -> dict[int, float]:
    setup = fixed_lr(setup)
    cells, val = Cells(out, setup), holdout(dataset, setup.val_per_class)
    epochs = candidate_epochs(val, setup, runtime)
    curves = {ipc: curve(val, setup, ipc, epochs, runtime, cells) for ipc in ipcs}
    chosen = {ipc: best(rows) for ipc, rows in curves.items()}
    table = [
        {
            "IPC": ipc,
            "expert epoch": f"{r['epoch']:g}",
            "expert val acc %": f"{100 * r['expert_val_acc']:.2f}",
            "label entropy": f"{r['label_entropy']:.3f}",
            "student val acc %": pm_of(r),
            "chosen": "✓" if r["epoch"] == chosen[ipc] else "",
        }
        for ipc, rows in curves.items()
        for r in rows
    ]
    fig, axes = subplots(1, 3, figsize=(14, 4))
    for ipc, rows in curves.items():
        x = [r["epoch"] for r in rows]
        axes[0].plot(x, [100 * r["expert_val_acc"] for r in rows], "k.-")
        axes[1].plot(x, [r["label_entropy"] for r in rows], ".-", label=f"IPC {ipc}")
        axes[2].errorbar(
            x, [100 * r["acc_mean"] for r in rows], yerr=[100 * r["acc_std"] for r in rows], fmt=".-", capsize=2, label=f"IPC {ipc}"
        )
        axes[2].axvline(chosen[ipc], ls=":", color=axes[2].lines[-1].get_color())
    for ax, ylabel in zip(axes, ("expert val accuracy %", "mean label entropy (nats)", "student val accuracy %")):
        ax.set_xlabel("expert epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend()
    axes[2].legend()
    fig.suptitle(f"{dataset.name}: expert epoch vs soft-label student (validation split, dotted = chosen)")
    notes = [
        f"validation: {setup.val_per_class} training images per class held out; expert trained on the rest; the test split is never read",
        f"labels: {setup.teacher.method}; students: {setup.student_model}, {setup.student_epochs} epochs, "
        f"lr {setup.student_lr}, {setup.seeds} seeds, soft-label loss {setup.soft_loss}",
        "chosen epoch per IPC: " + ", ".join(f"IPC {i} → {e:g}" for i, e in chosen.items()),
    ]
    write_report(
        out,
        "expert_epoch",
        f"Expert epoch selection · {dataset.name}",
        {"setup": setup.model_dump(), "chosen": chosen, "rows": [r for rows in curves.values() for r in rows]},
        table,
        notes,
        fig,
    )
    return chosen


def selection_dir(out: Path) -> Path:
    return Path(out) / "selection"


def resolve_epoch(dataset: Dataset, setup: Setup, ipc: int, epoch: float | str | None, runtime: Runtime, out: Path) -> float:
    """A given epoch, the last trained (None), or 'auto': selected on the validation split."""
    if epoch == "auto":
        return select_epoch(dataset, setup, ipc, runtime, selection_dir(out))
    return float(setup.teacher.labeler.epochs if epoch is None else epoch)
