"""Accuracy against what it costs: stored bytes and FLOPs (the axes of LADD's Fig. 2 and 3)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def accuracy_vs_cost(rows: list[dict], path: Path) -> None:
    """Two panels, one point per row with its ± std bar: accuracy vs zipped bytes, and vs FLOPs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    panels = (
        (lambda r: (r["image_bytes_zip"] + r["label_bytes_zip"]) / 1024, "stored KB (images + labels, zip)"),
        (lambda r: r["flops"], "FLOPs (label making + one student)"),
    )
    for ax, (x_of, xlabel) in zip(axes, panels):
        for r in rows:
            ax.errorbar(x_of(r), 100 * r["acc_mean"], yerr=100 * r["acc_std"], fmt="o", capsize=3,
                        label=f"{r['method']} · {r['model']} · IPC {r['ipc']}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"test accuracy % (mean ± std, {rows[0]['n_seeds']} seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{rows[0]['dataset']}: accuracy vs cost")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
