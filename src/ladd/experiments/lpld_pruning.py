"""SRe²L vs LPLD end to end, the measurement of LPLD's claim: recover both image sets from one BN
teacher (squeezed on first use), store one FKD-style relabel per set, then train students that
replay a random 1/ρ of the stored labels from an epoch-level or a batch-level pool (LPLD Tables 1,
5 and 24 in miniature). Also per set: within-class cosine similarity and MMD² of the teacher's
features, hard-label students, and the bytes of the stored labels against the images.

Everything is resumable: the artifacts and their relabel stores live under `<out>/artifacts/`
(recover and relabel resume from them), and each finished student configuration is a cell."""

from __future__ import annotations

from pathlib import Path

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.eval.diversity import diversity
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experiments.common import Cells, Setup, students, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.experts import ExpertConfig
from ladd.images.recipes import load_recipe
from ladd.images.squeeze import load_teacher, teacher_dir
from ladd.labels.relabel import RelabelConfig
from ladd.labels.replay import Pruning

IMAGE_SETS = ("sre2l", "lpld")


def recovered(
    dataset: Dataset, setup: Setup, method: str, ipc: int, iterations: int | None, relabel: RelabelConfig, runtime: Runtime, out: Path
):
    """The set's artifact with its relabel store, made or resumed under `out/artifacts/`."""
    path = out / "artifacts" / f"ipc{ipc}-{method}-iters{iterations or 'recipe'}-relabel{relabel.epochs}x{relabel.batch_size}"
    if (path / "manifest.json").is_file():
        art = load_artifact(path)
    else:
        params = {} if iterations is None else {"iterations": iterations}
        cfg = pipeline.ImagesConfig(method=method, ipc=ipc, seed=setup.image_seed, params=params)
        save_artifact(path, pipeline.distill(dataset, setup.source, pipeline.continuing(dataset, cfg), runtime))
        art = load_artifact(path)  # the relabel store is bound to the saved images' checksum
    return art if art.relabel is not None else pipeline.relabel_artifact(path, dataset, relabel, runtime)


def run(
    dataset: Dataset,
    setup: Setup,
    ipcs: list[int],
    rhos: list[float],
    pools: list[str],
    relabel_epochs: int,
    relabel_batch: int,
    iterations: int | None,
    runtime: Runtime,
    out: Path,
) -> list[dict]:
    out = Path(out)
    cells = Cells(out, setup)
    recipe = load_recipe("lpld", dataset.name, ipcs[0])["params"]
    teacher = ExpertConfig(model=recipe["teacher_model"], epochs=recipe["teacher_epochs"])
    relabel = RelabelConfig(epochs=relabel_epochs, batch_size=relabel_batch, teacher=teacher)
    model, prov = load_teacher(teacher_dir(dataset, None, teacher.model, teacher.epochs, runtime), dataset, runtime, need_bn=False)
    rows = []
    for ipc in ipcs:
        for method in IMAGE_SETS:
            art = recovered(dataset, setup, method, ipc, iterations, relabel, runtime, out)
            base = {"ipc": ipc, "images": method}
            div = cells.run(
                {**base, "experiment": "lpld", "measure": "diversity", "teacher": prov["checkpoint_sha256"]},
                lambda art=art: diversity(model, art.images, art.labels, dataset, 500, setup.image_seed),
            )
            hard = cells.run(
                {**base, "experiment": "lpld", "labels": "hard", "iterations": iterations},
                lambda art=art: students(art, dataset, setup, "baseline", runtime),
            )
            ratio = art.manifest["relabel"]["label_to_image_ratio"]
            for rho in rhos:
                for pool in pools if rho > 1 else pools[:1]:  # ρ = 1 keeps every unit: both pools hold the same labels
                    cfg = EvalConfig(
                        methods=("fkd",),
                        models=(setup.student_model,),
                        seeds=setup.seeds,
                        protocol="fkd",
                        epochs=relabel_epochs,
                        batch_size=relabel_batch,
                        pruning=Pruning(rho=rho, pool=pool),
                    )
                    key = {
                        **base,
                        "experiment": "lpld",
                        "labels": "fkd",
                        "rho": rho,
                        "pool": pool,
                        "iterations": iterations,
                        "relabel": relabel.model_dump(),
                    }

                    def compute(art=art, cfg=cfg):
                        row = evaluate(art, dataset, cfg, runtime)[0]
                        return {
                            k: row[k]
                            for k in (
                                "acc_mean",
                                "acc_std",
                                "accs",
                                "label_bytes_raw",
                                "label_bytes_zip",
                                "image_bytes_raw",
                                "relabel_kept_samples",
                                "label_to_image_ratio",
                                "lr",
                                "seconds",
                            )
                        }

                    rows.append(
                        {
                            **base,
                            "rho": rho,
                            "pool": pool if rho > 1 else "all",
                            **cells.run(key, compute),
                            "hard": hard,
                            "diversity": {k: div[k] for k in ("within_class_cosine", "mmd2", "real_within_class_cosine")},
                            "stored_label_to_image_ratio": ratio,
                        }
                    )
    table = [
        {
            "IPC": r["ipc"],
            "images": r["images"],
            "cosine ↓": f"{r['diversity']['within_class_cosine'] or float('nan'):.4f}",
            "MMD² ↓": f"{r['diversity']['mmd2']:.4f}",
            "hard labels %": pm_of(r["hard"]),
            "ρ": f"{r['rho']:g}",
            "pool": r["pool"],
            "fkd %": pm_of(r),
            "labels kept": r["relabel_kept_samples"],
            "label B kept (raw)": f"{r['label_bytes_raw']:,}",
            "labels / images": f"{r['label_to_image_ratio']:.2f}",
        }
        for r in rows
    ]
    fig, axes = subplots(1, len(ipcs), figsize=(5.5 * len(ipcs), 4), squeeze=False)
    for ax, ipc in zip(axes[0], ipcs):
        for color, method in zip(("tab:blue", "tab:orange"), IMAGE_SETS):
            for pool in pools:
                sub = [r for r in rows if r["ipc"] == ipc and r["images"] == method and r["pool"] in (pool, "all")]
                ax.errorbar(
                    [r["rho"] for r in sub],
                    [100 * r["acc_mean"] for r in sub],
                    yerr=[100 * r["acc_std"] for r in sub],
                    fmt="o-" if pool == "batch" else "s--",
                    color=color,
                    capsize=2,
                    label=f"{method}, {pool} pool",
                )
        ax.set_xscale("log")
        ax.set_xticks(rhos, [f"{r:g}" for r in rhos])
        ax.minorticks_off()
        ax.set_xlabel("ρ (keep 1/ρ of the stored labels)")
        ax.set_ylabel(f"test accuracy % ({setup.seeds} seeds)")
        ax.set_title(f"{dataset.name} IPC {ipc}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    notes = [
        f"teacher {prov['model']} epoch {prov['epoch']:g} ({100 * prov['test_acc']:.2f}% test), recipes sre2l/lpld-{dataset.name}"
        + (f" with {iterations} recover iterations" if iterations else ""),
        f"relabel: {relabel_epochs} epochs × batches of {relabel_batch}, fp16 logits, T = {relabel.temperature:g}, CutMix; "
        f"students {setup.student_model}, protocol fkd (AdamW + cosine, KL), {relabel_epochs} epochs, batch {relabel_batch}",
        f"hard labels: students {setup.student_model}, {setup.student_epochs} epochs, lr {setup.student_lr}, SGD + DSA",
        "cosine: mean within-class cosine similarity of teacher features (real images: see JSON); MMD²: Gaussian kernel, "
        "σ = median distance of the class's real features; "
        "labels / images: bytes of the kept six relabel components over the uint8 images",
    ]
    write_report(
        out,
        "lpld_pruning",
        f"SRe²L vs LPLD with label pruning · {dataset.name}",
        {"setup": setup.model_dump(), "rows": rows},
        table,
        notes,
        fig,
    )
    return rows
