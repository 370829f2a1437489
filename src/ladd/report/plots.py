"""Accuracy against what it costs: stored bytes and FLOPs (the axes of LADD's Fig. 2 and 3)."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FormatStrFormatter, LogLocator, NullFormatter, NullLocator


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kw):
    """(figure, axes) as `pyplot.subplots` with constrained layout, but a bare `Figure` that no
    pyplot window manager holds: ladd only writes figures to files, so it needs no display backend,
    never selects one for the user's process (a notebook keeps its own) and has nothing to close."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kw)


def accuracy_label(rows: list[dict]) -> str:
    """The accuracy axis' label: "mean ± std" only where more than one seed was trained."""
    seeds = {r["n_seeds"] for r in rows}
    if seeds == {1}:
        return "test accuracy % (1 seed)"
    return "test accuracy % (mean ± std over " + (f"{seeds.pop()} seeds)" if len(seeds) == 1 else "seeds)")


def cost_axis(ax, values: list[float], engineering: bool = True) -> None:
    """A log x axis whose tick labels never overlap: 1-2-5 ticks up to two decades wide, decades
    beyond, in engineering notation (200 G, 1.5 T; FLOPs) or plain numbers (0.5, 20; KB, which a
    "500 m" would misread); widened to a factor 6.25 around the data when narrower, so at least
    two ticks show (matplotlib's default labels every minor tick of a narrow log axis as 3×10¹¹,
    4×10¹¹, … and they run into each other)."""
    lo, hi = min(values) / 1.3, max(values) * 1.3
    if hi / lo < 6.25:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / 2.5, mid * 2.5
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if hi / lo <= 100 else (1.0,)))
    ax.xaxis.set_major_formatter(EngFormatter(sep="\u2009") if engineering else FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def accuracy_vs_cost(rows: list[dict], path: Path) -> None:
    """Two panels, one point per row with its ± std bar: accuracy vs zipped bytes, and vs FLOPs."""
    fig, axes = subplots(1, 2, figsize=(10, 4))
    panels = (
        (lambda r: (r["image_bytes_zip"] + r["label_bytes_zip"]) / 1024, "stored KB (images + labels, zip)", False),
        (lambda r: r["flops"], "FLOPs (images + labels + one student)", True),
    )
    for ax, (x_of, xlabel, engineering) in zip(axes, panels):
        for r in rows:
            ax.errorbar(
                x_of(r),
                100 * r["acc_mean"],
                yerr=100 * r["acc_std"],
                fmt="o",
                capsize=3,
                label=f"{r['method']} · {r['model']} · IPC {r['ipc']}",
            )
        cost_axis(ax, [x_of(r) for r in rows], engineering)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(accuracy_label(rows))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{rows[0]['dataset']}: accuracy vs cost")
    save_figure(fig, path)


def flops_curves(rows: list[dict], path: Path) -> None:
    """LADD's Fig. 3: test accuracy (mean ± std over seeds) against the deployment FLOPs spent so
    far, one line per row that recorded a curve; equal-FLOPs rows are drawn as stars."""
    fig, ax = subplots(figsize=(7, 4.5))
    xs = []
    for i, r in enumerate(r for r in rows if r.get("curve")):
        x = [p["flops_deploy"] for p in r["curve"]]
        y = [100 * p["acc_mean"] for p in r["curve"]]
        err = [100 * p["acc_std"] for p in r["curve"]]
        ax.plot(x, y, "-", color=f"C{i}", label=f"{r['method']} · {r['model']} ({r['epochs']} epochs, batch {r.get('batch_size')})")
        ax.fill_between(x, [a - e for a, e in zip(y, err)], [a + e for a, e in zip(y, err)], color=f"C{i}", alpha=0.2)
        xs += x
    for r in rows:
        if "equal_flops_of" in r:
            ax.errorbar(
                r["flops_deploy"],
                100 * r["acc_mean"],
                yerr=100 * r["acc_std"],
                fmt="*",
                ms=12,
                color="k",
                capsize=3,
                label=f"{r['method']}: {r['budget']}",
            )
            xs.append(r["flops_deploy"])
    cost_axis(ax, xs)
    ax.set_xlabel("deployment FLOPs spent (one student)")
    ax.set_ylabel(accuracy_label(rows))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{rows[0]['dataset']} IPC {rows[0]['ipc']}: accuracy over training FLOPs (same batch size and epochs)")
    save_figure(fig, path)


def _images(rows: list[dict]) -> dict[int, str]:
    """The image source of each row, for colour: the image method, or the run when two runs
    share a method and IPC (then they differ in something else the name says)."""
    runs: dict[tuple, set] = {}
    for r in rows:
        runs.setdefault((r.get("images_method"), r["ipc"]), set()).add(r.get("run"))
    clash = any(len(v) > 1 for v in runs.values())
    return {id(r): str(r.get("run") if clash or not r.get("images_method") else r["images_method"]) for r in rows}


MARKERS = "os^Dv<>Ph*X"


def _styles(rows: list[dict]):
    """Colour per image source, marker per label method (+ model, + protocol when several)."""
    source = _images(rows)
    models, protocols = {r["model"] for r in rows}, {r.get("protocol") for r in rows}

    def label(r):
        return " · ".join(
            [r["method"]] + ([r["model"]] if len(models) > 1 else []) + ([str(r.get("protocol"))] if len(protocols) > 1 else [])
        )

    colours = {k: f"C{i % 10}" for i, k in enumerate(dict.fromkeys(source[id(r)] for r in rows))}
    markers = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(dict.fromkeys(label(r) for r in rows))}
    return (lambda r: source[id(r)]), label, colours, markers


def _legends(ax, colours: dict, markers: dict, extra=()) -> None:
    """Two legends beside the axes: colour = images, marker = labels (and students)."""
    from matplotlib.lines import Line2D

    first = ax.legend(
        handles=[Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in colours.items()],
        title="images",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
    )
    ax.add_artist(first)
    # the last legend is the one constrained_layout makes room for: the wider entries go here
    ax.legend(
        handles=[Line2D([], [], color="0.3", marker=m, ls="", label=k) for k, m in markers.items()] + list(extra),
        title="labels",
        fontsize=7,
        title_fontsize=7,
        loc="lower left",
        bbox_to_anchor=(1.02, 0),
    )


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: cheaper-or-equal cost and higher-or-equal
    accuracy, strictly better in one. Sorted by cost."""
    front = []
    for i, (c, a) in enumerate(points):
        if not any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for c2, a2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def report_plots(rows: list[dict], out: Path) -> list[Path]:
    """accuracy vs IPC, vs stored bytes (with the Pareto front), vs FLOPs, and per-class accuracy.
    Every plot draws images in one colour each and label methods with one marker each."""
    out.mkdir(parents=True, exist_ok=True)

    def acc(r):
        return 100 * r["acc_mean"]

    def stored(r):
        return (r["image_bytes_zip"] + r["label_bytes_zip"]) / 1024

    ylabel = accuracy_label(rows)
    source, label, colours, markers = _styles(rows)
    several_ipc = len({r["ipc"] for r in rows}) > 1
    paths = []

    fig, ax = subplots(figsize=(8, 4.5))
    lines: dict[tuple[str, str], list[dict]] = {}  # runs at different IPC join one line
    for r in rows:
        lines.setdefault((source(r), label(r)), []).append(r)
    for (src, lab), group in lines.items():
        group = sorted(group, key=lambda r: r["ipc"])
        ax.errorbar(
            [r["ipc"] for r in group],
            [acc(r) for r in group],
            yerr=[100 * r["acc_std"] for r in group],
            color=colours[src],
            marker=markers[lab],
            capsize=3,
            lw=1,
            alpha=0.85,
        )
    ipcs = sorted({r["ipc"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(ipcs, [str(i) for i in ipcs])  # the IPCs run, not 10⁰, 10¹
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("images per class")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legends(ax, colours, markers)
    ax.set_title("accuracy vs IPC")
    paths.append(save_figure(fig, out / "acc_vs_ipc.png"))

    for x_of, xlabel, name, front in (
        (stored, "stored KB (images + labels, zip)", "acc_vs_bytes.png", True),
        (lambda r: r["flops"], "FLOPs (images + labels + one student)", "acc_vs_flops.png", False),
    ):
        fig, ax = subplots(figsize=(8, 4.5))
        for r in rows:
            ax.errorbar(
                x_of(r), acc(r), yerr=100 * r["acc_std"], color=colours[source(r)], marker=markers[label(r)], capsize=3, ls="", alpha=0.85
            )
            if several_ipc:
                ax.annotate(str(r["ipc"]), (x_of(r), acc(r)), fontsize=6, xytext=(4, -2), textcoords="offset points")
        extra = []
        if front:
            idx = pareto([(x_of(r), acc(r)) for r in rows])
            extra = ax.plot([x_of(rows[i]) for i in idx], [acc(rows[i]) for i in idx], "k--", lw=1, label="Pareto front")
        cost_axis(ax, [x_of(r) for r in rows], engineering=not front)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _legends(ax, colours, markers, extra)
        ax.set_title("accuracy vs " + ("stored bytes" if front else "FLOPs") + (" (numbers: IPC)" if several_ipc else ""))
        paths.append(save_figure(fig, out / name))

    paths.append(per_class(rows, [f"{source(r)} · {label(r)} · IPC {r['ipc']}" for r in rows], out / "per_class.png"))
    if len({r["model"] for r in rows}) > 1:
        paths.append(cross_architecture(rows, out / "cross_arch.png"))
    return paths


def per_class(rows: list[dict], names: list[str], path: Path) -> Path:
    """Heat map of per-class test accuracy % (mean over seeds): one row per result, one column per
    class, named. Rows of different class sets (runs on different datasets) get a panel each,
    all on one colour scale (0–100)."""
    import numpy as np

    panels: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        panels.setdefault((r["dataset"], tuple(r["class_names"])), []).append(i)
    widest = max(len(classes) for _, classes in panels)
    width = min(max(0.45 * widest + 4, 7), 22)
    label_room = {key: _class_ticks(key[1], width)[2] for key in panels}
    heights = [0.3 * len(idx) + 0.7 + label_room[key] for key, idx in panels.items()]
    fig, axes = subplots(len(panels), 1, figsize=(width, sum(heights) + 0.6), height_ratios=heights, squeeze=False)
    for ax, ((dataset, classes), idx) in zip(axes[:, 0], panels.items()):
        grid = 100 * np.array([rows[i]["class_acc_mean"] for i in idx], dtype=float)
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        if len(classes) <= 30:  # cells wide enough for a number
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):  # equal-FLOPs rows record no per-class accuracy
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", color=_ink(im, v), fontsize=6)
        ticks, rotation, _ = _class_ticks(classes, width)
        ax.set_xticks(ticks, [classes[j] for j in ticks], rotation=rotation, fontsize=7)
        ax.set_yticks(range(len(idx)), [names[i] for i in idx], fontsize=7)
        ax.set_title(f"{dataset} ({len(classes)} classes)", fontsize=8)
    fig.colorbar(im, ax=axes[:, 0], label="accuracy %", fraction=0.03, pad=0.01)
    fig.suptitle("per-class test accuracy % (mean over seeds)", fontsize=9)
    return save_figure(fig, path)


def _class_ticks(classes: tuple[str, ...], width: float) -> tuple[list[int], int, float]:
    """(columns to label, label rotation, inches the labels need below the axes): every class
    while ~10 pt per label fit the axes (else every k-th), names longer than 3 characters upright."""
    step = math.ceil(len(classes) * 10 / (72 * (width - 4)))
    longest = max(len(c) for c in classes)
    rotation = 90 if longest > 3 else 0
    return list(range(0, len(classes), step)), rotation, (0.08 * min(longest, 20) if rotation else 0.2)


def cross_architecture(rows: list[dict], path: Path) -> Path:
    """Heat map per evaluation method: images distilled with model A (rows) evaluated on model B
    (columns), mean accuracy over the rows of that cell (IPC and runs pooled: give one IPC)."""
    import numpy as np

    methods = sorted({r["method"] for r in rows})
    sources = sorted({str(r.get("distilled_with")) for r in rows})
    targets = sorted({r["model"] for r in rows})
    fig, axes = subplots(1, len(methods), figsize=(1.6 * len(targets) * len(methods) + 2, 1.0 * len(sources) + 2), squeeze=False)
    for ax, method in zip(axes[0], methods):
        grid = np.full((len(sources), len(targets)), np.nan)
        for i, s in enumerate(sources):
            for j, t in enumerate(targets):
                accs = [100 * r["acc_mean"] for r in rows if (r["method"], str(r.get("distilled_with")), r["model"]) == (method, s, t)]
                if accs:
                    grid[i, j] = float(np.mean(accs))
        im = ax.imshow(grid, cmap="viridis", vmin=np.nanmin(grid), vmax=np.nanmax(grid))
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color=_ink(im, v), fontsize=8)
        ax.set_xticks(range(len(targets)), targets, rotation=30, fontsize=7)
        ax.set_yticks(range(len(sources)), sources, fontsize=7)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("images distilled with")
        ax.set_title(method)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("cross-architecture accuracy %")
    return save_figure(fig, path)


def _ink(im, value: float) -> str:
    """Black on viridis' bright end, white on its dark end."""
    return "k" if im.norm(value) > 0.55 else "w"


def artifact_figures(art, run: str, out: Path, per_class: int) -> list[Path]:
    """Run `run`'s synthetic images (the Artifact `art`) with their top soft labels, and for LADD
    one image's N×N sub-images with their dense labels."""
    from ladd.augment.subsample import views

    names = art.manifest.get("source", {}).get("class_names") or [str(k) for k in range(int(art.labels.max()) + 1)]
    classes = sorted(set(art.labels.tolist()))[:10]
    picks = [[i for i, y in enumerate(art.labels.tolist()) if y == k][:per_class] for k in classes]
    cols = max(len(p) for p in picks)
    if cols == 1:  # one image per class (IPC 1): classes side by side, five to a row
        picks = [sum(picks[r : r + 5], []) for r in range(0, len(picks), 5)]
        cols = max(len(p) for p in picks)
    fig, axes = subplots(len(picks), cols, figsize=(1.6 * max(cols, 4), 1.6 * len(picks) + 0.3), squeeze=False)
    for ax_row, idx in zip(axes, picks):
        for ax, i in zip(ax_row, idx + [None] * (cols - len(idx))):
            ax.axis("off")
            if i is None:
                continue
            ax.imshow(image_pixels(art.images[i]), cmap="gray")
            ax.set_title(_top(art.soft_labels[i] if art.soft_labels is not None else None, names, int(art.labels[i])), fontsize=6)
    fig.suptitle(
        f"{run}: {art.manifest.get('images', {}).get('method', '?')} images, IPC {art.manifest.get('ipc')}"
        + (" · top soft labels" if art.soft_labels is not None else " · hard labels"),
        fontsize=8,
    )
    paths = [save_figure(fig, out / f"images_{run}.png")]
    if art.dense_labels is not None and art.geometry is not None:
        n, r = art.geometry
        crops = views(art.images[:1].float(), n, r)[0]
        fig, axes = subplots(n, n, figsize=(1.5 * n, 1.5 * n), squeeze=False)
        for j, ax in enumerate(axes.flat):
            ax.axis("off")
            ax.imshow(image_pixels(crops[j]), cmap="gray")
            ax.set_title(_top(art.dense_labels[0, j], names, None, k=1), fontsize=6)
        fig.suptitle(f"{run}: image 0 ({names[int(art.labels[0])]}) as {n}×{n} sub-images (R = {r}) with their dense labels", fontsize=8)
        paths.append(save_figure(fig, out / f"crops_{run}.png"))
    return paths


def image_pixels(image):
    """C×H×W pixels (0..255) → an array imshow draws: H×W for one channel, H×W×C in [0, 1]."""
    x = image.float().clamp(0, 255) / 255
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def _top(probs, names, hard: int | None, k: int = 2) -> str:
    if probs is None:
        return names[hard]
    p, idx = probs.float().topk(min(k, len(probs)))
    return " · ".join(f"{names[int(i)]} {float(v):.2f}" for v, i in zip(p, idx))


def save_figure(fig, path: Path) -> Path:
    """Every ladd figure is written here: one resolution."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
