"""LIC's Table 7 progression on one dataset: squeezed random real images → + key-sample selection
→ + information compensation → + region relabel, next to random real images, RDED and (optionally)
LADD's dense labels on the LIC images. The observer is the experiment's expert (`--expert-*`), so
one cached network observes, labels regions and teaches LADD labels.

Three LIC distillations per IPC cover every stage: relabelling happens after the images are final,
so one set with region labels gives both the "+ compensation" row (students on hard labels) and
the "+ relabel" row (students on the region labels, Eq. 9 = the `local-dense` term); the extra
"relabel without compensation" row shows what compensation adds once labels are soft."""

from __future__ import annotations

import time
from pathlib import Path

from ladd import pipeline
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, students, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of

# (row, image method, stage switches, student method): the Table 7 progression first. Students of
# squeezed images train on the expanded tiles (the sub-sampler's views: `local-*` terms), with the
# image's hard label before relabelling and the region labels after; on the whole mosaic a student
# learns nothing that transfers to single test digits (mnist5k IPC 1: 6% with hard labels).
# SRe²L recovers from its recipe's BN teacher (the observer has no BN); its soft-label row uses the
# observer's global soft labels, the nearest SRe²L gets to region labels without a stored relabel.
STAGES = [
    ("random real", "random", None, "baseline"),
    ("squeezed random", "lic", (False, False), "local-hard"),
    ("+ selection", "lic", (True, False), "local-hard"),
    ("+ compensation", "lic", (True, True), "local-hard"),
    ("+ relabel (LIC)", "lic", (True, True), "local-dense"),
    ("selection + relabel, no compensation", "lic", (True, False), "local-dense"),
    ("squeezed random + relabel", "lic", (False, False), "local-dense"),
    ("RDED (hard labels)", "rded", None, "local-hard"),
    ("RDED", "rded", None, "local-dense"),
    ("SRe²L (hard labels)", "sre2l", None, "baseline"),
    ("SRe²L + observer soft labels", "sre2l", None, "soft"),
]


def observer_params(setup: Setup) -> dict:
    e = setup.teacher.labeler
    return {"observer_model": e.model, "observer_epochs": e.epochs, "observer_lr": e.lr, "observer_seed": e.seed}


def run(
    dataset: Dataset, setup: Setup, ipcs: list[int], ladd_labels: bool, runtime: Runtime, out: Path, iterations: int | None = None
) -> list[dict]:
    cells = Cells(out, setup)
    observer = observer_params(setup)
    rows = []
    for ipc in ipcs:
        made: dict = {}

        def images(method: str, switches, ipc=ipc, made=made):
            """Distill once per (method, switches) in this process; seconds recorded with the set."""
            key = (method, switches)
            if key not in made:
                params = dict(observer) if method in ("lic", "rded") else {}
                if switches is not None:
                    params.update(select=switches[0], compensate=switches[1], relabel=True)
                if iterations is not None and method in ("lic", "sre2l"):
                    params["iterations"] = iterations
                cfg = pipeline.ImagesConfig(method=method, ipc=ipc, seed=setup.image_seed, params=params)
                cfg = pipeline.continuing(dataset, cfg)  # an interrupted run continues from its checkpoints
                t0 = time.perf_counter()
                art = pipeline.distill(dataset, setup.source, cfg, runtime)
                made[key] = (art, time.perf_counter() - t0)
            return made[key]

        for name, method, switches, student in STAGES:
            key = {
                "experiment": "lic-ablation",
                "ipc": ipc,
                "row": name,
                "students": student,
                "iterations": iterations,
                "observer": observer,
            }

            def compute(method=method, switches=switches, student=student):
                art, seconds = images(method, switches)
                if student == "soft":
                    art = pipeline.label(art, dataset, pipeline.LabelConfig(method="soft", labeler=setup.teacher.labeler), runtime)
                learned = art.manifest["images"].get("learned") or {}
                return {
                    **students(art, dataset, setup, student, runtime),
                    "distill_seconds": round(seconds, 2),
                    "compensation": learned.get("compensation"),
                }

            rows.append({"ipc": ipc, "row": name, "images": method, "students": student, **cells.run(key, compute)})
        if ladd_labels:
            key = {
                "experiment": "lic-ablation",
                "ipc": ipc,
                "row": "LIC images + LADD labels",
                "iterations": iterations,
                "observer": observer,
                "labels": setup.teacher.labeler.model_dump(),
            }

            def compute_ladd():
                art, seconds = images("lic", (True, True))
                labelled = pipeline.label(art, dataset, pipeline.LabelConfig(method="ladd", labeler=setup.teacher.labeler), runtime)
                return {**students(labelled, dataset, setup, "ladd", runtime), "distill_seconds": round(seconds, 2), "compensation": None}

            rows.append(
                {"ipc": ipc, "row": "LIC images + LADD labels", "images": "lic", "students": "ladd", **cells.run(key, compute_ladd)}
            )
    table = [
        {
            "IPC": r["ipc"],
            "images / labels": r["row"],
            "students": r["students"],
            "acc %": pm_of(r),
            "label KB (zip)": f"{r['label_bytes_zip'] / 1024:.1f}",
            "compensation s/image": f"{r['compensation']['seconds_per_image']:.3f}" if r.get("compensation") else "–",
        }
        for r in rows
    ]
    fig, ax = subplots(figsize=(8, 4.5))
    names = list(dict.fromkeys(r["row"] for r in rows))
    width = 0.8 / len(ipcs)
    for i, ipc in enumerate(ipcs):
        sub = {r["row"]: r for r in rows if r["ipc"] == ipc}
        xs = [j + i * width for j, n in enumerate(names) if n in sub]
        ax.bar(
            xs,
            [100 * sub[n]["acc_mean"] for n in names if n in sub],
            width,
            yerr=[100 * sub[n]["acc_std"] for n in names if n in sub],
            capsize=2,
            label=f"IPC {ipc}",
        )
    ax.set_xticks([j + width * (len(ipcs) - 1) / 2 for j in range(len(names))], names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test accuracy % ({setup.seeds} seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    ax.set_title(f"{dataset.name}: LIC stages (Table 7) against random, RDED and SRe²L")
    e = setup.teacher.labeler
    notes = [
        f"observer (and LADD labeler): {e.model}, {e.epochs} epochs, lr {e.lr}, seed {e.seed}; images seed {setup.image_seed}",
        f"students: {setup.student_model}, {setup.student_epochs} epochs, lr {setup.student_lr}, final-epoch test accuracy; "
        "baseline = whole images, hard labels; local-hard = expanded tiles, the image's hard label; "
        "local-dense = expanded tiles, region labels (Eq. 9); ladd = whole image hard + LADD's 5×5 dense labels",
        "LIC recipe for the dataset" + (f", compensation iterations {iterations}" if iterations is not None else ""),
    ]
    write_report(out, "lic_ablation", f"LIC ablation · {dataset.name}", {"setup": setup.model_dump(), "rows": rows}, table, notes, fig)
    return rows
