"""What several commands do with their options: where outputs go, which artifact and data they read."""

from __future__ import annotations

import json
import os
import typing
from datetime import datetime
from pathlib import Path


from ladd.artifact import MANIFEST, load_artifact
from ladd.core.errors import ArtifactError, ConfigError
from ladd.data import SOURCES
from ladd.core.io import file_in_the_way
from ladd import pipeline
from ladd.cli.options import absolute


def default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def log_beside(artifact: Path) -> Path:
    """The run log of a command writing an artifact: ARTIFACT.log beside it, outside the folder
    that `save_artifact` switches into place whole. Named from the absolute path: `--out .` has no name."""
    artifact = Path(os.path.abspath(artifact))
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
    made_from = art.manifest["source"]["dataset"]
    if made_from not in SOURCES:  # the artifact's word, not the user's option: not a usage error
        raise ArtifactError(
            f"{Path(artifact) / MANIFEST} names dataset {made_from!r}, which this install does not have "
            f"({', '.join(SOURCES.names())}): install the plugin that provides it, or the manifest is corrupt"
        )
    src = pipeline.source_of(art)
    if data_dir is not None:
        src = src.model_copy(update={"data_dir": absolute(data_dir)})
    data = pipeline.load_source(src)
    pipeline.check_same_data(art, data)
    return art, src, data


# What the path options ladd writes to name, checked as they are read (`check_paths`): a JSON "file"
# or a "folder"; by option, or by (command, option) where a command's differs. None: not checked
# (`ladd export --out` is a file or a folder by its --format and must not exist: export refuses any).
WRITES = {"--json": "file", "--out": "folder", "--labeler-dir": "folder", "--teacher-dir": "folder"}
WRITES_IN = {("diversity", "--out"): "file", ("export", "--out"): None}
# inputs typed as text (a name or a path), whose empty value read as the current folder
READS = {"--data-dir", "--buffer", "--import-path", "--labeler-weights", "--teacher-weights"}


def check_paths(command, name: str = "ladd") -> None:
    """Check every path parameter of the click `command` and its subcommands as it is read, before
    the command runs: an empty or blank path is refused (typer reads "" as ".", so `--out ""` wrote
    into the current folder or failed on its empty name, and "   " made a folder named with
    spaces), and an output `writable` refuses, naming the option and the path given, instead of an
    OS error naming a temporary file after the work, or a file of the user's overwritten."""
    for sub, cmd in getattr(command, "commands", {}).items():
        check_paths(cmd, sub)
    for param in getattr(command, "params", []):
        option = param.opts[0]
        if option in WRITES or option in READS or _takes_path(param.type_descriptor.annotation):
            shown = option if param.param_type_name == "option" else param.name.upper()
            writes = WRITES_IN.get((name, option), WRITES.get(option))
            param.process_value = _path_check(param.process_value, shown, writes, name, option in WRITES)


def _takes_path(annotation) -> bool:
    return annotation is Path or any(_takes_path(a) for a in typing.get_args(annotation))


def _path_check(process_value, option: str, writes: str | None, command: str, output: bool):
    """A parameter's `process_value`, refusing a blank path (in the text typed, before typer turns
    it into Path(".")), then an `output` in an artifact folder, or one `writable` refuses."""

    give = {"file": "give a file path", "folder": "give a folder path"}.get(writes, "give a path")

    def process(ctx, value):
        for text in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(text, str) and not text.strip():
                raise ConfigError(f"{option} {text!r} is blank: {give}" if text else f"{option} is empty: {give}")
        value = process_value(ctx, value)
        if output and value is not None:
            outside_artifacts(Path(value), option, command)
        if writes is not None and value is not None:
            writable(Path(value), option, writes, command)
        return value

    return process


# commands whose --out is the artifact they write (replaced with --overwrite)
ARTIFACT_OUT = {"distill", "label", "recover"}


def writable(path: Path, option: str, writes: str, command: str) -> None:
    """Refuse an output `path` where `command` cannot write the "file" or "folder" its `option`
    names: a file in the way of a folder, a folder where the file goes, or a file ladd did not
    write (only a JSON object, as ladd's JSON outputs are, is replaced)."""
    blocker = file_in_the_way(path if writes == "folder" else path.parent)
    if blocker == path:
        raise ArtifactError(f"{option} {path} is a file, not a folder: give a folder path")
    if blocker is not None:
        raise ArtifactError(f"{option} {path}: {blocker} is a file, not a folder: choose another path")
    if writes == "file" and path.is_dir():
        raise ArtifactError(f"{option} {path} is a folder: give a file path, e.g. {path / (command + '.json')}")
    if writes == "file" and path.exists() and _json_object(path) is None:
        raise ArtifactError(f"{option} {path} exists and is not a JSON file ladd wrote: choose another path (ladd replaces only its own)")


def outside_artifacts(path: Path, option: str, command: str) -> None:
    """Refuse an output in an artifact folder, which `ladd label` and `ladd relabel` replace whole:
    what was written there would be lost. The artifact a command writes (`ARTIFACT_OUT`) is its own."""
    here = Path(os.path.abspath(path))
    home = artifact_around(here)
    if home is not None and not (home == here and command in ARTIFACT_OUT and option == "--out"):
        where = "is the artifact" if home == here else "lies inside the artifact"
        raise ArtifactError(f"{option} {path} {where} {home}, which ladd replaces whole when it labels it again: choose a path outside it")


MAX_MANIFEST_BYTES = 64 << 20  # a larger manifest.json is not read: not an artifact's


def artifact_around(path: Path) -> Path | None:
    """The artifact folder that is `path` or holds it: the nearest folder whose manifest.json is a
    ladd artifact's (a JSON object naming `ladd_version` and `files`; another project's manifest.json
    is not one)."""
    here = Path(os.path.abspath(path))
    for folder in (here, *here.parents):
        manifest = folder / MANIFEST
        if manifest.is_file() and manifest.stat().st_size < MAX_MANIFEST_BYTES:
            if {"ladd_version", "files"} <= set(_json_object(manifest) or {}):
                return folder
    return None


def _json_object(path: Path) -> dict | None:
    """The JSON object `path` holds, as every JSON output of ladd does, else None (parsed only when
    it starts like one, so a large file of the user's is not read)."""
    try:
        with open(path, "rb") as f:
            if f.read(1) != b"{":
                return None
            f.seek(0)
            value = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
