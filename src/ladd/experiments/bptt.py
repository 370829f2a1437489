"""Labels learned by truncated BPTT vs expert labels (the paper's Fig. 8 and Fig. 12): learn labels
for random real images with no teacher, then measure, per image, the Jensen-Shannon distance of the
learned label to the labels at every epoch of one expert and of an ensemble of K experts (logits
averaged), min-max normalized per image (0 = the closest epoch). The expert-pair baseline puts
those distances on a scale: the labels of one more expert (seed K, outside the ensemble) measured
against the ensemble at the same epoch, raw and normalized like the learned labels. Students
trained on hard, learned and expert labels are compared too."""

from __future__ import annotations

from pathlib import Path

import torch

from ladd import pipeline
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.experiments.common import Cells, Setup, real_images, soft_labeled, students, teacher_config, write_report
from ladd.report.plots import subplots
from ladd.report.tables import pm_of
from ladd.experiments.expert_epoch import resolve_epoch
from ladd.experts import ensure_expert
from ladd.labels.bptt import BpttConfig
from ladd.labels.soft import js_distance
from ladd.train.loop import saved_epochs


def distances(labels: torch.Tensor | list[torch.Tensor], by_epoch: list[torch.Tensor]) -> torch.Tensor:
    """images × epochs JSD of `labels` (one tensor, or one per epoch) to each epoch's labels."""
    own = labels if isinstance(labels, list) else [labels] * len(by_epoch)
    return torch.stack([js_distance(a, b) for a, b in zip(own, by_epoch)], dim=1)


def normalized(d: torch.Tensor) -> torch.Tensor:
    """Min-max normalized over epochs within each image (row)."""
    lo, hi = d.min(1, keepdim=True).values, d.max(1, keepdim=True).values
    return (d - lo) / (hi - lo).clamp_min(1e-12)


def normalized_distances(learned: torch.Tensor, by_epoch: list[torch.Tensor]) -> torch.Tensor:
    """images × epochs JSD, min-max normalized over epochs within each image."""
    return normalized(distances(learned, by_epoch))


def run(dataset: Dataset, setup: Setup, ipc: int, bptt: BpttConfig, epoch, runtime: Runtime, out: Path, ensemble: int = 3) -> dict:
    cells = Cells(out, setup)
    art = real_images(dataset, setup, ipc)
    learned = pipeline.label(art, dataset, teacher_config(setup, method="bptt", bptt=bptt), runtime)
    directory, _ = ensure_expert(dataset, setup.teacher.labeler, None, runtime)
    epochs = [e for e in saved_epochs(directory) if e > 0]

    def labels(e, **kw):
        return soft_labeled(art, dataset, setup, runtime, epoch=e, **kw).soft_labels.float()

    by_epoch = [labels(e) for e in epochs]
    dist = normalized_distances(learned.soft_labels.float(), by_epoch)
    pair_setup = setup.model_copy(
        update={
            "teacher": setup.teacher.model_copy(
                update={"labeler": setup.teacher.labeler.model_copy(update={"seed": setup.teacher.labeler.seed + ensemble})}
            )
        }
    )
    by_epoch_ensemble = [labels(e, ensemble=ensemble) for e in epochs]
    other = [soft_labeled(art, dataset, pair_setup, runtime, epoch=e).soft_labels.float() for e in epochs]
    to_ensemble = distances(learned.soft_labels.float(), by_epoch_ensemble)
    pair = distances(other, by_epoch_ensemble)  # expert seed K vs the ensemble, epoch by epoch
    pair_to_final = distances(other[-1], by_epoch_ensemble)  # a finished expert's labels placed on the ensemble's epochs
    chosen = resolve_epoch(dataset, setup, ipc, epoch, runtime, out)
    key = {"experiment": "bptt", "ipc": ipc, "bptt": bptt.model_dump()}
    results = {
        "hard": cells.run({**key, "labels": "hard"}, lambda: students(art, dataset, setup, "baseline", runtime)),
        "bptt": cells.run({**key, "labels": "bptt"}, lambda: students(learned, dataset, setup, "soft", runtime)),
        f"expert epoch {chosen:g}": cells.run(
            {**key, "labels": "expert", "epoch": chosen},
            lambda: students(soft_labeled(art, dataset, setup, runtime, epoch=chosen), dataset, setup, "soft", runtime),
        ),
    }
    mean = dist.mean(0)
    closest = epochs[int(mean.argmin())]
    mean_ensemble = normalized(to_ensemble).mean(0)
    closest_ensemble = epochs[int(mean_ensemble.argmin())]
    table = [{"labels": k, "acc %": pm_of(v)} for k, v in results.items()]
    fig, axes = subplots(1, 3, figsize=(17, 4))
    im = axes[0].imshow(dist.numpy(), aspect="auto", cmap="viridis", extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(dist), 0))
    fig.colorbar(im, ax=axes[0], label="normalized JSD (per image)")
    axes[0].set_xlabel("expert epoch")
    axes[0].set_ylabel("image")
    axes[1].plot(epochs, mean.numpy(), "o-", label="BPTT vs one expert")
    axes[1].plot(epochs, mean_ensemble.numpy(), "s-", label=f"BPTT vs ensemble of {ensemble}")
    axes[1].plot(epochs, normalized(pair_to_final).mean(0).numpy(), "^:", color="gray", label=f"final expert seed {ensemble} vs ensemble")
    axes[1].set_xlabel("expert epoch")
    axes[1].set_ylabel("mean normalized JSD (per image min-max)")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    axes[2].plot(epochs, to_ensemble.mean(0).numpy(), "s-", label="BPTT labels vs ensemble at epoch e")
    axes[2].plot(epochs, pair.mean(0).numpy(), "^:", color="gray", label=f"expert seed {ensemble} at e vs ensemble at e")
    axes[2].set_xlabel("expert epoch e")
    axes[2].set_ylabel("mean JSD (nats, not normalized)")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"{dataset.name} IPC {ipc}: BPTT-learned labels vs expert labels by epoch")
    notes = [
        f"BPTT: T = {bptt.unroll} student steps, back-propagated through the last M = {bptt.backprop}, "
        f"{bptt.iterations} label updates, student {bptt.model}",
        f"learned labels are closest on average to the expert's epoch-{closest:g} labels and to the {ensemble}-expert ensemble's "
        f"epoch-{closest_ensemble:g} labels",
        f"expert-pair baseline: an expert of another seed is at mean JSD {pair.mean(0).min():.3f}–{pair.mean(0).max():.3f} from the "
        f"ensemble at the same epoch; the learned labels are at {to_ensemble.mean(0).min():.3f} from the closest ensemble epoch",
        f"learned-label target loss {learned.manifest['labels']['bptt']['initial_loss']:.3f} → "
        f"{learned.manifest['labels']['bptt']['final_loss']:.3f}",
    ]
    payload = {
        "setup": setup.model_dump(),
        "ipc": ipc,
        "bptt": bptt.model_dump(),
        "epochs": epochs,
        "mean_normalized_jsd": mean.tolist(),
        "closest_epoch": closest,
        "ensemble": ensemble,
        "mean_normalized_jsd_ensemble": mean_ensemble.tolist(),
        "closest_epoch_ensemble": closest_ensemble,
        "mean_jsd_ensemble": to_ensemble.mean(0).tolist(),
        "expert_pair_mean_jsd": pair.mean(0).tolist(),
        "expert_pair_final_mean_normalized_jsd": normalized(pair_to_final).mean(0).tolist(),
        "students": results,
    }
    write_report(out, "bptt", f"BPTT-learned labels · {dataset.name} · IPC {ipc}", payload, table, notes, fig)
    return payload
