"""Labels learned by truncated BPTT vs the expert's labels (the paper's Fig. 8): learn labels for
random real images with no teacher, then measure, per image, the Jensen-Shannon distance of the
learned label to the expert's label at every epoch, min-max normalized per image (0 = the
closest epoch). Students trained on hard, learned and expert labels are compared too."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ladd import pipeline
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, soft_labeled, students, teacher_config, write_report
from ladd.report.tables import pm
from ladd.experiments.expert_epoch import resolve_epoch
from ladd.experts import ensure_expert
from ladd.labels.bptt import BpttConfig
from ladd.labels.soft import js_distance
from ladd.train.loop import saved_epochs


def normalized_distances(learned: torch.Tensor, by_epoch: list[torch.Tensor]) -> torch.Tensor:
    """images × epochs JSD, min-max normalized over epochs within each image."""
    d = torch.stack([js_distance(learned, e) for e in by_epoch], dim=1)
    lo, hi = d.min(1, keepdim=True).values, d.max(1, keepdim=True).values
    return (d - lo) / (hi - lo).clamp_min(1e-12)


def run(dataset: Dataset, setup: Setup, ipc: int, bptt: BpttConfig, epoch, runtime: Runtime, out: Path) -> dict:
    cells = Cells(out, setup)
    art = real_images(dataset, setup, ipc)
    learned = pipeline.label(art, dataset, teacher_config(setup, method="bptt", bptt=bptt), runtime)
    directory, _ = ensure_expert(dataset, setup.teacher.labeler, None, runtime)
    epochs = [e for e in saved_epochs(directory) if e > 0]
    by_epoch = [soft_labeled(art, dataset, setup, runtime, epoch=e).soft_labels.float() for e in epochs]
    dist = normalized_distances(learned.soft_labels.float(), by_epoch)
    chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
    key = {"experiment": "bptt", "ipc": ipc, "bptt": bptt.model_dump()}
    results = {
        "hard": cells.run({**key, "labels": "hard"}, lambda: students(art, dataset, setup, "baseline", runtime)),
        "bptt": cells.run({**key, "labels": "bptt"}, lambda: students(learned, dataset, setup, "soft", runtime)),
        f"expert epoch {chosen:g}": cells.run({**key, "labels": "expert", "epoch": chosen}, lambda: students(
            soft_labeled(art, dataset, setup, runtime, epoch=chosen), dataset, setup, "soft", runtime)),
    }
    mean = dist.mean(0)
    closest = epochs[int(mean.argmin())]
    table = [{"labels": k, "acc %": pm(v["acc_mean"], v["acc_std"])} for k, v in results.items()]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    im = axes[0].imshow(dist.numpy(), aspect="auto", cmap="viridis", extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(dist), 0))
    fig.colorbar(im, ax=axes[0], label="normalized JSD (per image)")
    axes[0].set_xlabel("expert epoch")
    axes[0].set_ylabel("image")
    axes[1].plot(epochs, mean.numpy(), "o-")
    axes[1].set_xlabel("expert epoch")
    axes[1].set_ylabel("mean normalized JSD to the learned labels")
    axes[1].grid(alpha=0.3)
    fig.suptitle(f"{dataset.name} IPC {ipc}: BPTT-learned labels vs expert labels by epoch")
    notes = [f"BPTT: T = {bptt.unroll} student steps, back-propagated through the last M = {bptt.backprop}, {bptt.iterations} label updates, student {bptt.model}",
             f"learned labels are closest on average to the expert's epoch-{closest:g} labels",
             f"learned-label target loss {learned.manifest['labels']['bptt']['initial_loss']:.3f} → {learned.manifest['labels']['bptt']['final_loss']:.3f}"]
    payload = {"setup": setup.model_dump(), "ipc": ipc, "bptt": bptt.model_dump(), "epochs": epochs, "mean_normalized_jsd": mean.tolist(),
               "closest_epoch": closest, "students": results}
    write_report(out, "bptt", f"BPTT-learned labels · {dataset.name} · IPC {ipc}", payload, table, notes, fig)
    return payload
