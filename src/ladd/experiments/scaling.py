"""Data-knowledge scaling law (the paper's Fig. 6): students on a grid of IPC × top-k soft labels
(and hard labels); each label budget's accuracy curve is fit by acc(IPC) = (a·IPC)^c − d, and the
fits tell how many more images hard labels need to match soft labels: the data-size reduction
factor IPC_hard(acc_soft(IPC)) / IPC.

The paper's form (a·IPC/b)^c − d has a and b only through their ratio, so one parameter a stands
for a/b in the free fit (a, c, d per label budget); a three-parameter fit needs at least four IPC
values. The paper reads its curves with one shared exponent instead: every budget is the
hard-label curve with IPC scaled by a constant factor, acc_j(IPC) = (a·f_j·IPC)^c − d with a, c, d
shared and f_hard = 1, so f_j is the data-size reduction factor at every IPC (its "6×"). Both
fits are reported. Each (IPC, labels) cell also has its stored bytes (images + labels, zipped):
the data–knowledge Pareto front is the cells no cheaper cell beats."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
import numpy as np
from scipy.optimize import curve_fit

from ladd.core.errors import ConfigError
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, relabeled, soft_labeled, students, write_report
from ladd.report.tables import pm_of
from ladd.experiments.expert_epoch import resolve_epoch
from ladd.labels.soft import keep_top_k
from ladd.report.plots import pareto, subplots


def law(ipc, a, c, d):
    return (a * np.asarray(ipc, dtype=float)) ** c - d


def fit(ipcs: list[int], accs: list[float]) -> dict:
    """Least-squares fit of acc = (a·IPC)^c − d (a, c > 0)."""
    if len(ipcs) < 4:
        raise ConfigError(f"the scaling-law fit has 3 parameters: give at least 4 IPC values (got {len(ipcs)})")
    (a, c, d), _ = curve_fit(law, ipcs, accs, p0=(1.0, 0.2, 0.0), bounds=((1e-9, 1e-6, -np.inf), (np.inf, 5.0, np.inf)), maxfev=20000)
    residual = float(np.sqrt(np.mean((law(ipcs, a, c, d) - np.asarray(accs)) ** 2)))
    return {"a": float(a), "c": float(c), "d": float(d), "rmse": residual}


def fit_shared(ipcs: list[int], curves: dict[str, list[float]], reference: str = "hard") -> dict:
    """Least-squares fit of acc_j(IPC) = (a·f_j·IPC)^c − d over every curve j at once: a, c, d
    shared, one factor f_j per curve (f_reference = 1)."""
    names = [n for n in curves if n != reference]
    if len(ipcs) < 2:
        raise ConfigError(f"the shared scaling-law fit needs at least 2 IPC values (got {len(ipcs)})")
    x = np.tile(np.asarray(ipcs, dtype=float), len(curves))
    which = np.repeat(np.arange(len(curves)), len(ipcs))  # 0 = reference, k = names[k - 1]
    order = [reference, *names]
    y = np.concatenate([np.asarray(curves[n], dtype=float) for n in order])

    def model(_, a, c, d, *log_f):
        f = np.exp(np.concatenate([[0.0], log_f]))[which]
        return (a * f * x) ** c - d

    p0 = (1.0, 0.2, 0.0, *([0.0] * len(names)))
    lower = (1e-9, 1e-6, -np.inf, *([-20.0] * len(names)))
    upper = (np.inf, 5.0, np.inf, *([20.0] * len(names)))
    params, _ = curve_fit(model, x, y, p0=p0, bounds=(lower, upper), maxfev=50000)
    a, c, d, *log_f = params
    residual = float(np.sqrt(np.mean((model(x, *params) - y) ** 2)))
    return {
        "a": float(a),
        "c": float(c),
        "d": float(d),
        "factor": {n: float(np.exp(v)) for n, v in zip(names, log_f)},
        "reference": reference,
        "rmse": residual,
    }


def ipc_needed(acc: float, params: dict) -> float:
    """Inverse of the law: the IPC at which a fit reaches `acc`."""
    return float((acc + params["d"]) ** (1 / params["c"]) / params["a"])


def stored_kb(cell: dict) -> float:
    """What a cell's student set costs to store: its images and the labels it used, zipped."""
    return (cell["image_bytes_zip"] + cell["label_bytes_zip"]) / 1024


def run(dataset: Dataset, setup: Setup, ipcs: list[int], ks: list[int], epoch, runtime: Runtime, out: Path) -> dict:
    cells = Cells(out, setup)
    ks = sorted(set(ks))
    for k in ks:
        if not 1 <= k <= dataset.num_classes:
            raise ConfigError(f"--top-k {k} must be between 1 and the number of classes ({dataset.num_classes})")
    grid = {"hard": {}, **{f"top{k}": {} for k in ks}}
    for ipc in ipcs:
        art = real_images(dataset, setup, ipc)
        grid["hard"][ipc] = cells.run(
            {"experiment": "scaling", "ipc": ipc, "labels": "hard"}, lambda: students(art, dataset, setup, "baseline", runtime)
        )
        chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
        labeled = None
        for k in ks:

            def compute(k=k) -> dict:
                nonlocal labeled
                labeled = labeled or soft_labeled(art, dataset, setup, runtime, epoch=chosen)
                return {
                    **students(relabeled(labeled, keep_top_k(labeled.soft_labels, k)), dataset, setup, "soft", runtime),
                    "epoch": chosen,
                }

            grid[f"top{k}"][ipc] = cells.run({"experiment": "scaling", "ipc": ipc, "labels": f"top{k}", "epoch": chosen}, compute)
    fits = {name: fit(ipcs, [cells_[i]["acc_mean"] for i in ipcs]) for name, cells_ in grid.items()}
    shared = fit_shared(ipcs, {name: [cells_[i]["acc_mean"] for i in ipcs] for name, cells_ in grid.items()})
    reduction = {
        name: {ipc: ipc_needed(grid[name][ipc]["acc_mean"], fits["hard"]) / ipc for ipc in ipcs} for name in grid if name != "hard"
    }
    cells_all = [(name, ipc, grid[name][ipc]) for name in grid for ipc in ipcs]
    front = [cells_all[i] for i in pareto([(stored_kb(c), c["acc_mean"]) for _, _, c in cells_all])]
    table = [
        {
            "IPC": ipc,
            **{f"{name} acc %": pm_of(grid[name][ipc]) for name in grid},
            **{f"×data {name}": f"{reduction[name][ipc]:.1f}" for name in reduction},
        }
        for ipc in ipcs
    ]
    fig, axes = subplots(1, 2, figsize=(13, 4.5))
    ax = axes[0]
    dense = np.geomspace(min(ipcs), max(ipcs), 100)
    for name, cells_ in grid.items():
        line = ax.errorbar(
            ipcs,
            [100 * cells_[i]["acc_mean"] for i in ipcs],
            yerr=[100 * cells_[i]["acc_std"] for i in ipcs],
            fmt="o",
            capsize=2,
            label=name,
        )
        p = fits[name]
        ax.plot(dense, 100 * law(dense, p["a"], p["c"], p["d"]), "-", color=line[0].get_color(), alpha=0.6)
        scale = 1.0 if name == "hard" else shared["factor"][name]
        ax.plot(dense, 100 * law(dense * scale, shared["a"], shared["c"], shared["d"]), ":", color=line[0].get_color())
    ax = axes[1]
    for name, cells_ in grid.items():
        ax.plot([stored_kb(cells_[i]) for i in ipcs], [100 * cells_[i]["acc_mean"] for i in ipcs], "o", label=name)
    ax.plot([stored_kb(c) for _, _, c in front], [100 * c["acc_mean"] for _, _, c in front], "k--", lw=1, label="Pareto front")
    for ax, xlabel, title in (
        (axes[0], "images per class", "fits: free (a·IPC)^c − d per budget (solid), shared a, c, d with IPC × f (dotted)"),
        (axes[1], "stored KB (images + labels, zip)", "data–knowledge trade-off: the cheapest way to each accuracy"),
    ):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"test accuracy % ({setup.seeds} seeds)")
        ax.set_ylim(top=100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{dataset.name}: data-knowledge scaling")
    notes = [
        "top-k keeps the k largest probabilities of each soft label and zeroes the rest without renormalizing",
        "×data = IPC that hard labels need (inverted hard-label fit) for the soft labels' accuracy ÷ IPC; "
        "values outside the IPC grid are extrapolated",
        "free fits: "
        + "; ".join(f"{n}: a={p['a']:.3g} c={p['c']:.3g} d={p['d']:.3g} (rmse {100 * p['rmse']:.2f} pts)" for n, p in fits.items()),
        f"shared fit (one exponent c={shared['c']:.3g}, a={shared['a']:.3g}, d={shared['d']:.3g}, rmse {100 * shared['rmse']:.2f} pts): "
        "constant data-size factors " + ", ".join(f"{n} {f:.2f}×" for n, f in shared["factor"].items()),
        "Pareto front (stored KB → accuracy): "
        + ", ".join(f"{n} IPC {i} ({stored_kb(c):.1f} KB, {100 * c['acc_mean']:.2f}%)" for n, i, c in front),
    ]
    payload = {
        "setup": setup.model_dump(),
        "ipcs": ipcs,
        "ks": ks,
        "grid": grid,
        "fits": fits,
        "shared_fit": shared,
        "reduction": reduction,
        "pareto": [{"labels": n, "ipc": i, "stored_kb": stored_kb(c), "acc_mean": c["acc_mean"]} for n, i, c in front],
    }
    write_report(out, "scaling", f"Data-knowledge scaling law · {dataset.name}", payload, table, notes, fig)
    return payload
