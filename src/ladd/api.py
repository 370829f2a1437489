"""ladd from Python: the command line's stages as functions over the typed configs it builds.

    from ladd import api

    src = api.SourceConfig(dataset="digits")
    data = api.load_dataset(src)
    art = api.distill(data, api.ImagesConfig(method="random", ipc=1), src)
    art = api.label(art, data, api.LabelConfig())
    rows = api.evaluate(art, data, api.eval_config(seeds=1, epochs=2))
    api.save_artifact("run/artifact", art)
    api.save_results("run", rows, art, "run/artifact", api.eval_config(seeds=1, epochs=2))
    api.report(["run"], "report")

Every function is a thin layer over `ladd.pipeline`, `ladd.eval.protocol`, `ladd.report` and
`ladd.artifact`, so a script and `ladd distill`/`label`/`eval`/`report` given the same settings
make the same bytes. `runtime` defaults to the CPU at fp32; `api.runtime("cuda")` picks a device.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ladd import pipeline
from ladd.artifact import Artifact, describe, load_artifact as _load_artifact, save_artifact as _save_artifact
from ladd.core import plugins
from ladd.core.errors import ArtifactError
from ladd.core.runtime import Runtime, Speed
from ladd.core.types import Dataset
from ladd.eval.protocol import EvalConfig, checkpointing, default_methods, evaluate as _evaluate, rounding_rows
from ladd.eval.protocols import DEFAULT_PRESET, PRESETS
from ladd.experts import ExpertConfig
from ladd.labels import LabelConfig
from ladd.labels.relabel import RelabelConfig
from ladd.pipeline import ImagesConfig, SourceConfig

__all__ = [
    # stages
    "load_dataset",
    "distill",
    "label",
    "relabel",
    "evaluate",
    "save_results",
    "report",
    "load_artifact",
    "save_artifact",
    "describe",
    # settings
    "runtime",
    "eval_config",
    "checkpointing",  # `with api.checkpointing(folder):` students resume after a kill
    # typed configs and values
    "SourceConfig",
    "ImagesConfig",
    "LabelConfig",
    "ExpertConfig",
    "RelabelConfig",
    "EvalConfig",
    "Speed",
    "Runtime",
    "Artifact",
    "Dataset",
    "PRESETS",
]

plugins.load()  # scripts see the installed plugins' methods, datasets, models and protocols, as the CLI does


def runtime(device: str = "auto", speed: Speed | None = None) -> Runtime:
    """The device and speed settings every training stage takes (`--device`, `--precision`, …):
    'auto' is CUDA when there is one, else the CPU; an unknown or absent device raises `LaddError`."""
    return Runtime.from_name(device, speed)


def load_dataset(source: SourceConfig | str = "mnist5k") -> Dataset:
    """A source's train/test splits, class names and normalization (`SourceConfig` or a source
    name). On-disk sources are decoded into the data cache on first use; nothing else is written."""
    return pipeline.load_source(SourceConfig(dataset=source) if isinstance(source, str) else source)


def distill(dataset: Dataset, images: ImagesConfig, source: SourceConfig, runtime: Runtime = Runtime()) -> Artifact:
    """Image stage (`ladd distill`): an in-memory artifact of `images.ipc` images per class and hard
    labels; `source` is what `dataset` was loaded from, recorded so later stages can reload it.
    Learned methods checkpoint into the cache; nothing else is written (see `save_artifact`)."""
    return pipeline.distill(dataset, source, images, runtime)


def label(art: Artifact, dataset: Dataset, cfg: LabelConfig = LabelConfig(), runtime: Runtime = Runtime()) -> Artifact:
    """Label stage (`ladd label`): the artifact with the label method's soft and/or dense labels
    (replacing earlier ones). The labeler is trained into, or reused from, the expert cache."""
    return pipeline.label(art, dataset, cfg, runtime)


def relabel(path: str | Path, dataset: Dataset, cfg: RelabelConfig, runtime: Runtime = Runtime(), *, overwrite: bool = False) -> Artifact:
    """Relabel stage (`ladd relabel`): stored FKD-style augmentations and soft labels written into
    the saved artifact at `path` (`path/relabel/`, resumable); returns the artifact as saved."""
    return pipeline.relabel_artifact(Path(path), dataset, cfg, runtime, overwrite=overwrite)


def eval_config(preset: str = DEFAULT_PRESET, **given) -> EvalConfig:
    """The students' settings as `ladd eval --preset PRESET` makes them: student model, seeds, local
    views and protocol from the preset ('quick': minutes on a CPU; 'paper'), any `EvalConfig`
    field given overriding it (e.g. `seeds=1, epochs=2, methods=("baseline", "ladd")`)."""
    chosen = PRESETS[preset]
    defaults = {
        "models": (chosen.model,),
        "seeds": chosen.seeds,
        "crops_per_step": chosen.crops_per_step,
        "default_protocol": chosen.protocol,
    }
    return EvalConfig(**{**defaults, **given})


def evaluate(art: Artifact, dataset: Dataset, cfg: EvalConfig | None = None, runtime: Runtime = Runtime()) -> list[dict]:
    """Evaluation (`ladd eval` without --robust/--equal-cost): fresh students per method × model ×
    seed, each tested once after its last epoch; one result row per (method, model) with accuracy,
    bytes and FLOPs (+ a rounded-pixels row for float32 images). `cfg` defaults to the quick
    preset with the methods that fit the artifact's labels. Writes nothing."""
    cfg = cfg or eval_config(methods=default_methods(art))
    return _evaluate(art, dataset, cfg, runtime) + rounding_rows(art, dataset, cfg, runtime)


def save_results(
    out: str | Path,
    rows: list[dict],
    art: Artifact,
    artifact_path: str | Path,
    cfg: EvalConfig,
    title: str = "ladd api",
    *,
    notes: list[str] | None = None,
    config: dict | None = None,
    extra: dict | None = None,
    command: str | None = None,
) -> list[Path]:
    """A run folder as `ladd eval` writes it (results.json/.md/.png and the notes on how the numbers
    were made), its rows naming the saved artifact they were evaluated on (absolute path, so `report`
    finds its images from any folder, and its images' SHA-256, so it notices a replaced artifact).
    `notes` default to the evaluation's own; `config` (more settings to record) and `extra` (more
    top-level results) are merged in; `command` (default: the running one) is recorded as the one that
    made them. `art` may be the artifact in memory that was saved at `artifact_path`. Returns the files written."""
    from ladd.report.results import eval_notes, write_results

    saved = art if "files" in art.manifest else _load_artifact(Path(artifact_path))  # in memory: the saved copy's hash
    if saved is not art and not (saved.images.shape == art.images.shape and torch.equal(saved.images, art.images)):
        raise ArtifactError(f"{artifact_path} holds other images than the artifact evaluated: save it there first (api.save_artifact)")
    where = {"artifact": str(Path(artifact_path).resolve()), "artifact_sha256": saved.manifest["files"]["images.safetensors"]["sha256"]}
    config = {"artifact": where["artifact"], "eval": cfg.model_dump(), **(config or {})}
    notes = eval_notes(art, cfg, rows) if notes is None else notes
    return write_results(Path(out), [{**row, **where} for row in rows], config, notes, title, extra, command)


def report(runs: list[str | Path], out: str | Path, *, images: int = 4) -> list[Path]:
    """`ladd report`: run folders' results side by side (markdown, CSV, JSON, plots, image grids)
    written into `out`. Returns the files written."""
    from ladd.report.build import build_report

    return build_report([Path(r) for r in runs], Path(out), images=images)


def save_artifact(path: str | Path, art: Artifact) -> Path:
    """Write `art` to the folder `path` (one safetensors file per component + manifest.json,
    switched into place in one step); returns the path."""
    _save_artifact(Path(path), art)
    return Path(path)


def load_artifact(path: str | Path, *, complete: bool = False) -> Artifact:
    """An artifact folder read back with its hashes, shapes and label rows verified (`complete`:
    also refuse one whose stored relabel is unfinished)."""
    return _load_artifact(Path(path), complete=complete)
