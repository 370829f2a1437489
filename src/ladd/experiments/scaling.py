"""Data-knowledge scaling law (the paper's Fig. 6): students on a grid of IPC × top-k soft labels
(and hard labels); each label budget's accuracy curve is fit by acc(IPC) = (a·IPC)^c − d, and the
fits tell how many more images hard labels need to match soft labels: the data-size reduction
factor IPC_hard(acc_soft(IPC)) / IPC.

The issue's form (a·IPC/b)^c − d has a and b only through their ratio, so one parameter a stands
for a/b here; a three-parameter fit needs at least four IPC values."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import curve_fit

from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, relabeled, soft_labeled, students, write_report
from ladd.report.tables import pm
from ladd.experiments.expert_epoch import resolve_epoch
from ladd.labels.soft import keep_top_k


def law(ipc, a, c, d):
    return (a * np.asarray(ipc, dtype=float)) ** c - d


def fit(ipcs: list[int], accs: list[float]) -> dict:
    """Least-squares fit of acc = (a·IPC)^c − d (a, c > 0)."""
    if len(ipcs) < 4:
        raise LaddError(f"the scaling-law fit has 3 parameters: give at least 4 IPC values (got {len(ipcs)})")
    (a, c, d), _ = curve_fit(law, ipcs, accs, p0=(1.0, 0.2, 0.0), bounds=((1e-9, 1e-6, -np.inf), (np.inf, 5.0, np.inf)), maxfev=20000)
    residual = float(np.sqrt(np.mean((law(ipcs, a, c, d) - np.asarray(accs)) ** 2)))
    return {"a": float(a), "c": float(c), "d": float(d), "rmse": residual}


def ipc_needed(acc: float, params: dict) -> float:
    """Inverse of the law: the IPC at which a fit reaches `acc`."""
    return float((acc + params["d"]) ** (1 / params["c"]) / params["a"])


def run(dataset: Dataset, setup: Setup, ipcs: list[int], ks: list[int], epoch, runtime: Runtime, out: Path) -> dict:
    cells = Cells(out, setup)
    ks = sorted(set(ks))
    for k in ks:
        if not 1 <= k <= dataset.num_classes:
            raise LaddError(f"--top-k {k} must be between 1 and the number of classes ({dataset.num_classes})")
    grid = {"hard": {}, **{f"top{k}": {} for k in ks}}
    for ipc in ipcs:
        art = real_images(dataset, setup, ipc)
        grid["hard"][ipc] = cells.run({"experiment": "scaling", "ipc": ipc, "labels": "hard"},
                                      lambda: students(art, dataset, setup, "baseline", runtime))
        chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
        labeled = None
        for k in ks:
            def compute(k=k) -> dict:
                nonlocal labeled
                labeled = labeled or soft_labeled(art, dataset, setup, runtime, epoch=chosen)
                return {**students(relabeled(labeled, keep_top_k(labeled.soft_labels, k)), dataset, setup, "soft", runtime), "epoch": chosen}
            grid[f"top{k}"][ipc] = cells.run({"experiment": "scaling", "ipc": ipc, "labels": f"top{k}", "epoch": chosen}, compute)
    fits = {name: fit(ipcs, [cells_[i]["acc_mean"] for i in ipcs]) for name, cells_ in grid.items()}
    reduction = {name: {ipc: ipc_needed(grid[name][ipc]["acc_mean"], fits["hard"]) / ipc for ipc in ipcs} for name in grid if name != "hard"}
    table = [{"IPC": ipc, **{f"{name} acc %": pm(grid[name][ipc]["acc_mean"], grid[name][ipc]["acc_std"]) for name in grid},
              **{f"×data {name}": f"{reduction[name][ipc]:.1f}" for name in reduction}} for ipc in ipcs]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    dense = np.geomspace(min(ipcs), max(ipcs), 100)
    for name, cells_ in grid.items():
        line = ax.errorbar(ipcs, [100 * cells_[i]["acc_mean"] for i in ipcs], yerr=[100 * cells_[i]["acc_std"] for i in ipcs], fmt="o", capsize=2, label=name)
        p = fits[name]
        ax.plot(dense, 100 * law(dense, p["a"], p["c"], p["d"]), "-", color=line[0].get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("images per class")
    ax.set_ylabel(f"test accuracy % ({setup.seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{dataset.name}: data-knowledge scaling (lines: fitted (a·IPC)^c − d)")
    notes = ["top-k keeps the k largest probabilities of each soft label and zeroes the rest without renormalizing",
             "×data = IPC that hard labels need (inverted hard-label fit) for the soft labels' accuracy ÷ IPC; values outside the IPC grid are extrapolated",
             "fits: " + "; ".join(f"{n}: a={p['a']:.3g} c={p['c']:.3g} d={p['d']:.3g} (rmse {100 * p['rmse']:.2f} pts)" for n, p in fits.items())]
    payload = {"setup": setup.model_dump(), "ipcs": ipcs, "ks": ks, "grid": grid, "fits": fits, "reduction": reduction}
    write_report(out, "scaling", f"Data-knowledge scaling law · {dataset.name}", payload, table, notes, fig)
    return payload
