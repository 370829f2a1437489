"""What every soft-label experiment shares: its configuration, resumable cells, the images /
labels / students it builds, and how it writes JSON + markdown + PNG.

An experiment is a grid of cells (one student configuration each). A finished cell is written to
`<out>/cells/<hash>.json` at once, so an interrupted experiment re-run with the same `--out`
skips what it already did and gives the same result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

import ladd
from ladd import pipeline
from ladd.artifact import Artifact
from ladd.core.io import command_line, lock, read_json, write_json, write_text
from ladd.core import progress
from ladd.core.progress import console, log
from ladd.core.runtime import Runtime
from ladd.core.types import Dataset
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig
from ladd.labels import LabelConfig


class Setup(BaseModel):
    """Source, expert and student settings shared by the experiments. CPU-scale defaults:
    width-64 ConvNets, 150 student epochs, 3 seeds (the reference: width 128, 1000–3000 epochs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    source: pipeline.SourceConfig = pipeline.SourceConfig()
    # how the expert is trained and labels (epoch set per experiment); method "ladd" selects for dense labels
    teacher: LabelConfig = LabelConfig(method="soft", labeler=ExpertConfig(model="convnet-w64", epochs=10))
    student_model: str = "convnet-w64"
    student_epochs: int = Field(150, ge=1)
    student_lr: float = Field(0.01, gt=0)
    seeds: int = Field(3, ge=1)
    soft_loss: Literal["ce", "kl"] = "ce"
    image_seed: int = 0  # which random real images are drawn
    val_per_class: int = Field(50, ge=1)  # held-out validation images per class (selection only)
    # expert epochs that selection tries (None: every saved one); a subset keeps large IPC affordable
    candidate_epochs: tuple[float, ...] | None = None
    # student lrs tried on the validation split for every final student (the paper's one tuned knob); () = student_lr
    select_lr: tuple[float, ...] = ()


CELL_FORMAT = 2  # bumped when a change to ladd changes what a cell computes or how it is keyed: old cells are not reused


class Cells:
    """JSON results of finished cells, keyed by everything that determines them."""

    def __init__(self, out: Path, setup: Setup):
        self.dir = Path(out) / "cells"
        self.resumed = False
        # which epochs are tried never changes one cell's result, so it is not part of the key
        self.setup = setup.model_dump(exclude={"candidate_epochs"})

    def run(self, key: dict, compute: Callable[[], dict]) -> dict:
        """The cell's result: read back, or computed and written (under the cell's lock, so two
        processes on one `--out` compute it once)."""
        full = {"format": CELL_FORMAT, "setup": self.setup, **key}
        path = self.dir / (hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:16] + ".json")
        with lock(path, "computing"):
            if path.exists():
                if not self.resumed:  # said once: a re-run may skip many cells
                    progress.log(f"resuming from the finished cells in {self.dir}")
                    self.resumed = True
                return read_json(path, f"delete {path} to compute the cell again")["result"]
            result = compute()
            write_json(path, {"key": full, "result": result})
            progress.log(f"checkpoint: cell done -> {path}")
        return result


def real_images(dataset: Dataset, setup: Setup, ipc: int) -> Artifact:
    """Random real images with hard labels: the soft-label baseline's images."""
    return pipeline.distill(dataset, setup.source, pipeline.ImagesConfig(ipc=ipc, seed=setup.image_seed))


def teacher_config(setup: Setup, epoch: float | None = None, **options) -> LabelConfig:
    return setup.teacher.model_copy(update={"epoch": epoch, **options})


def soft_labeled(art: Artifact, dataset: Dataset, setup: Setup, runtime: Runtime, epoch: float | None = None, **options) -> Artifact:
    """Global soft labels from the teacher at `epoch` (options: ensemble, temperature, top_k)."""
    return pipeline.label(art, dataset, teacher_config(setup, epoch, method="soft", **options), runtime)


def relabeled(art: Artifact, soft: torch.Tensor) -> Artifact:
    """The artifact with edited soft labels (swapped, cut, zeroed, top-k) in place of the teacher's;
    their bytes are measured again (the manifest's were the teacher's labels')."""
    manifest = {k: v for k, v in art.manifest.items() if k != "storage"}
    return Artifact(art.images, art.labels, manifest, soft_labels=soft)


def students(art: Artifact, dataset: Dataset, setup: Setup, method: str, runtime: Runtime) -> dict:
    """Mean ± std test accuracy (on `dataset.test`) of `setup.seeds` fresh students; with
    `setup.select_lr`, their lr is the candidate whose students scored best on the validation split."""
    cfg = EvalConfig(
        methods=(method,),
        models=(setup.student_model,),
        seeds=setup.seeds,
        epochs=setup.student_epochs,
        lr=None if setup.select_lr else setup.student_lr,
        soft_loss=setup.soft_loss,
        select_lr=setup.select_lr,
        val_per_class=setup.val_per_class,
    )
    row = evaluate(art, dataset, cfg, runtime)[0]
    keep = ("acc_mean", "acc_std", "accs", "class_acc_mean", "label_bytes_zip", "image_bytes_zip", "flops", "seconds", "lr", "lr_selection")
    return {k: row[k] for k in keep}


def write_report(out: Path, name: str, title: str, payload: dict, table: list[dict], notes: list[str], figure) -> None:
    """<out>/<name>.json (everything), .md (the table and notes), .png (the figure)."""
    out = Path(out)
    write_json(out / f"{name}.json", {"ladd_version": ladd.__version__, "experiment": name, "command": command_line(), **payload})
    head = list(table[0]) if table else []
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in table]
    lines += [""] + [f"- {n}" for n in notes] + ["", f"![{name}]({name}.png)", ""]
    write_text(out / f"{name}.md", "\n".join(lines))
    figure.savefig(out / f"{name}.png", dpi=120)
    for line in lines[2 : 4 + len(table)]:
        console.print(line, markup=False)
    log(f"wrote {out / name}.json, .md and .png")
