"""What several commands do with their options: where outputs go, which artifact and data they read."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


from ladd.artifact import MANIFEST, load_artifact
from ladd.core.errors import ArtifactError
from ladd import pipeline
from ladd.cli.options import absolute


def default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def log_beside(artifact: Path) -> Path:
    """The run log of a command writing an artifact: ARTIFACT.log beside it, outside the folder
    that `save_artifact` switches into place whole."""
    return artifact.with_name(artifact.name + ".log")


def new_artifact(path: Path, overwrite: bool) -> Path:
    """Where a command writes a new artifact, refused before any work when an artifact is there
    already and neither --overwrite nor --resume (the same command, continued) was given: results
    evaluated on it would silently describe other images."""
    if not overwrite and (path / MANIFEST).is_file():
        raise ArtifactError(f"{path} already holds an artifact: add --overwrite to replace it, or choose another --out")
    return path


def open_artifact(artifact: Path, data_dir: str | None):
    """An artifact, its source config (with --data-dir where given) and that source's data,
    checked to be the data the artifact was made from."""
    art = load_artifact(artifact, complete=True)
    src = pipeline.source_of(art)
    if data_dir is not None:
        src = src.model_copy(update={"data_dir": absolute(data_dir)})
    data = pipeline.load_source(src)
    pipeline.check_same_data(art, data)
    return art, src, data
