"""Image selection by expert cross-entropy (the paper's Appendix B): within each class, rank the
real training images by the expert's cross-entropy on their true label, cut the ranking into Q
quantiles (0 = easiest), draw IPC images from one quantile, label them with the expert's soft
labels, and compare students across quantiles and against random images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ladd.core.errors import ConfigError
from ladd.core.runtime import Runtime, generator
from ladd.core.types import Dataset, normalize
from ladd.data.stream import chunks, gather
from ladd.experiments.common import Cells, Setup, real_images, soft_labeled, students, teacher_config, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.experiments.expert_epoch import resolve_epoch
from ladd.labels.methods import build_teacher


def quantile_members(ce: torch.Tensor, labels: torch.Tensor, num_classes: int, quantiles: int) -> list[list[torch.Tensor]]:
    """members[q][k]: indices of class k's images in CE quantile q (ascending CE)."""
    members = [[None] * num_classes for _ in range(quantiles)]
    for k in range(num_classes):
        idx = (labels == k).nonzero().flatten()
        ranked = idx[ce[idx].argsort()]
        for q, part in enumerate(ranked.tensor_split(quantiles)):
            members[q][k] = part
    return members


def select(members: list[torch.Tensor], ipc: int, seed: int) -> torch.Tensor:
    gen = generator(seed)
    for k, m in enumerate(members):
        if len(m) < ipc:
            raise ConfigError(f"a CE quantile of class {k} holds {len(m)} images, fewer than --ipc {ipc}: use fewer --quantiles")
    return torch.cat([m[torch.randperm(len(m), generator=gen)[:ipc]] for m in members])


def run(dataset: Dataset, setup: Setup, ipc: int, quantiles: int, epoch, runtime: Runtime, out: Path) -> list[dict]:
    cells = Cells(out, setup)
    chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
    teacher, _, _ = build_teacher(dataset, teacher_config(setup, chosen), runtime)
    with torch.no_grad():  # CE on the expert's logits (the reference passes probabilities as logits: a quirk not kept)
        logits = torch.cat(
            [teacher.logits(normalize(c.to(teacher.device), dataset.mean, dataset.std)).cpu() for c in chunks(dataset.train.images, 512)]
        )
    ce = F.cross_entropy(logits, dataset.train.labels, reduction="none")
    members = quantile_members(ce, dataset.train.labels, dataset.num_classes, quantiles)
    base = real_images(dataset, setup, ipc)
    variants = {"random": base}
    for q in range(quantiles):
        idx = select(members[q], ipc, setup.image_seed)
        manifest = {**base.manifest, "images": {**base.manifest["images"], "method": f"ce-quantile-{q}"}}
        variants[f"quantile {q}"] = replace(
            base, images=gather(dataset.train.images, idx), labels=dataset.train.labels[idx], manifest=manifest
        )
    rows = []
    for name, art in variants.items():
        res = cells.run(
            {"experiment": "ce-selection", "ipc": ipc, "epoch": chosen, "quantiles": quantiles, "variant": name},
            lambda art=art: students(soft_labeled(art, dataset, setup, runtime, epoch=chosen), dataset, setup, "soft", runtime),
        )
        rows.append({"variant": name, **res})
    table = [{"images": r["variant"], "acc %": pm_of(r)} for r in rows]
    fig, ax = subplots(figsize=(6, 4))
    q_rows = rows[1:]
    ax.errorbar(
        range(quantiles),
        [100 * r["acc_mean"] for r in q_rows],
        yerr=[100 * r["acc_std"] for r in q_rows],
        fmt="o-",
        capsize=3,
        label="CE quantile",
    )
    ax.axhline(100 * rows[0]["acc_mean"], ls=":", color="gray", label="random images")
    ax.set_xlabel("expert cross-entropy quantile (0 = easiest)")
    ax.set_ylabel(f"test accuracy % ({setup.seeds} seeds, soft labels)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{dataset.name} IPC {ipc}: image selection by expert CE (epoch {chosen:g})")
    notes = [f"CE of the expert (epoch {chosen:g}) on each training image's true label, ranked within its class into {quantiles} quantiles"]
    write_report(
        out,
        "ce_selection",
        f"Image selection by expert cross-entropy · {dataset.name} · IPC {ipc}",
        {"setup": setup.model_dump(), "ipc": ipc, "epoch": chosen, "rows": rows},
        table,
        notes,
        fig,
    )
    return rows
