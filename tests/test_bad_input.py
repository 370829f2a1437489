"""Bad input on the command line: every numeric option of every command (read from the app itself,
so a new option is swept too), every option holding a list or a special value, and every numeric
recipe parameter (`--param`), given a negative, zero, NaN, ±inf, huge or bogus value, ends in one
line `error: ...` naming the option, exit code 2, before any data is loaded, with nothing written.
Plus the two reported bugs: `ladd experts --num-experts 0` (was an UnboundLocalError) and
`ladd eval --robust` on LIC/RDED artifacts (was a KeyError; now evaluates)."""

from __future__ import annotations

import json
import math
import sys
import tomllib
import typing
from pathlib import Path

import annotated_types
import pytest
import typer

from ladd import cli, pipeline
from ladd.core import dist
from ladd.core.errors import ArtifactError, ConfigError, RunError
from ladd.cli import common, outputs
from ladd.artifact import load_artifact, save_artifact
from ladd.core.runtime import Runtime
from ladd.images import IMAGE_METHODS
from ladd.images.recipes import params_model

from conftest import ladd_main, make_dataset

ARTIFACT_COMMANDS = {"label", "eval", "gradcam", "diversity", "info", "export", "relabel"}

INT_BAD = ["-1", "0", "nan", "inf", "1e30", str(10**12), "abc"]
FLOAT_BAD = ["-1", "0", "nan", "inf", "-inf", "1e30", "abc"]
# options parsed by ladd (lists, 'auto', i/n, names, choices): values that must be refused as the option is read
SPECIAL_BAD = {
    "--ipc": ["0", "-1", "1,nan", "inf", "1e30", str(10**12), "abc", ","],
    "--top-k": ["0", "-1", "nan", "inf", "1e30", str(10**12), "abc", "1,,x"],
    "--rho": ["0", "0.5", "-1", "nan", "inf", "1e30", "abc"],
    "--temperatures": ["0", "-1", "1,nan", "inf", "1e30", "abc"],
    "--select-lr": ["0", "-1", "nan", "inf", "1e30", "abc"],
    "--candidate-epochs": ["-1", "nan", "inf", "1e30", "abc"],
    "--test-images": ["-1", "nan", "1e30", str(10**12), "abc"],
    "--labeler-epoch": ["-1", "nan", "inf", "1e30", "abc"],
    "--expert-epoch": ["-1", "nan", "inf", "1e30", "abc"],
    "--crops-per-step": ["0", "-1", "nan", "1e30", str(10**12), "abc"],
    "--local-weight": ["0", "-1", "nan", "inf", "1e30", "abc", "learn"],
    "--pools": ["epochs", "abc", ","],
    "--equal-cost": ["abc", ","],
    "--param": ["x", "=1"],
    "--model": ["convnett", ","],
    "--labeler-model": ["convnett"],
    "--expert-model": ["convnett"],
    "--teacher-model": ["convnett"],
    "--labels": ["sof"],
    "--label-dtype": ["float64"],
    "--soft-loss": ["mse"],
    "--local-reduction": ["max"],
    "--protocol": ["nope"],
    "--device": ["gpu", "cuda:99"],
    "--pool": ["epochs"],
    "--prune-metric": ["loss"],
    "--prune-keep": ["middle"],
    "--replay-batches": ["mixed"],
}
PARAM_BAD = ["-1", "0", "nan", "inf", "-inf", "1e30", str(10**12), '"abc"']  # TOML values of --param KEY=VALUE


def _commands():
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    return list(walk(typer.main.get_command(cli.app), ()))


def _number_kind(annotation) -> type | None:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return args[0] if len(args) == 1 and args[0] in (int, float) else None


def _fits(text: str, kind: type, lo: float, hi: float) -> bool:
    try:
        value = kind(text)
    except ValueError:
        return False
    return lo <= value <= hi  # NaN fits nothing


def _cases():
    cases = []
    for path, cmd in _commands():
        for p in cmd.params:
            if p.param_type_name != "option":
                continue
            name = p.opts[0]
            kind = _number_kind(p.type_descriptor.annotation)
            if p.type_descriptor.parameter_info.parser is not None:
                values = SPECIAL_BAD.get(name, ["nonsense"])  # a new choice option: at least a bogus word
            elif kind is not None:
                values = [v for v in (INT_BAD if kind is int else FLOAT_BAD) if not _fits(v, kind, p.min, p.max)]
            else:
                continue
            cases += [pytest.param(path, name, v, id=f"{' '.join(path)} {name}={v}") for v in values]
    return cases


def _bounds(field) -> tuple[float, float]:
    lo, hi = -math.inf, math.inf
    for m in field.metadata:
        if isinstance(m, (annotated_types.Ge, annotated_types.Gt)):
            lo = getattr(m, "ge", getattr(m, "gt", None))
        if isinstance(m, (annotated_types.Le, annotated_types.Lt)):
            hi = getattr(m, "le", getattr(m, "lt", None))
    return lo, hi


def _param_fields():
    """(method, key, kind, lo, hi) of every numeric recipe parameter, one method per parameter model."""
    seen, out = set(), []
    for method in IMAGE_METHODS.names():
        model = params_model(method)
        if model is None or model in seen:
            continue
        seen.add(model)
        for key, field in model.model_fields.items():
            kind = _number_kind(field.annotation)
            if kind is not None:
                out.append((method, key, kind, *_bounds(field)))
    return out


def _param_cases():
    cases = []
    for method, key, kind, lo, hi in _param_fields():
        for v in PARAM_BAD:
            value = tomllib.loads(f"v = {v}")["v"]
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and (kind is float or float(value).is_integer())
                and lo <= value <= hi
                and (kind is float or abs(value) < 2**63)
            )
            if not ok:
                cases.append(pytest.param(method, key, v, id=f"{method} {key}={v}"))
    return cases


COMMANDS = dict(_commands())
CASES = _cases()
PARAM_CASES = _param_cases()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    ds = make_dataset(n_per_class=2, classes=10)
    path = tmp_path_factory.mktemp("art") / "artifact"
    save_artifact(path, pipeline.distill(ds, pipeline.SourceConfig(dataset="digits"), pipeline.ImagesConfig(ipc=1), Runtime()))
    return path


@pytest.fixture
def sealed(tmp_path, monkeypatch, artifact):
    """An empty working directory, data loading forbidden; checks afterwards that nothing was
    written (working directory, cache, artifact)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def forbidden(*a, **k):
        raise AssertionError("data was loaded before the bad value was refused")

    monkeypatch.setattr(pipeline, "load_source", forbidden)
    for module in (common, outputs):
        monkeypatch.setattr(module, "load_artifact", forbidden)
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in artifact.iterdir())
    yield work
    assert list(work.iterdir()) == [], "something was written"
    assert not (tmp_path / "cache").exists(), "something was cached"
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in artifact.iterdir()) == before


def _positional(path: tuple[str, ...], artifact) -> list:
    if path[-1] in ARTIFACT_COMMANDS:
        return [artifact]
    if path[-1] == "report":
        return [artifact.parent]
    return []


def _refused(code: int, err: str, option: str) -> None:
    assert code == (RunError.exit_code if "CUDA is not available" in err else ConfigError.exit_code), err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line
    assert option in err and "Traceback" not in err, err


@pytest.mark.parametrize("path,option,value", CASES)
def test_bad_value_is_refused_on_one_line_before_anything_runs(capsys, sealed, artifact, path, option, value):
    out = ["--out", sealed / "out"] if any("--out" in p.opts for p in COMMANDS[path].params) else []
    code, err = ladd_main(capsys, *path, *_positional(path, artifact), f"{option}={value}", *out)
    _refused(code, err, option)


@pytest.mark.parametrize("method,key,value", PARAM_CASES)
def test_bad_recipe_parameter_is_refused_before_anything_runs(capsys, sealed, method, key, value):
    code, err = ladd_main(
        capsys, "distill", "--dataset", "digits", "--images", method, "--param", f"{key}={value}", "--out", sealed / "out"
    )
    _refused(code, err, f"--param {key}=")


def test_the_sweep_covers_every_command_and_number():
    """Every numeric option has a finite range (NaN, ±inf and absurd sizes fall outside it), and so
    has every numeric recipe parameter; the sweep reaches every command that takes a number."""
    for path, cmd in _commands():
        for p in cmd.params:
            if _number_kind(p.type_descriptor.annotation) is not None:
                assert p.min is not None and p.max is not None, f"{' '.join(path)} {p.opts[0]} has no range"
    for method, key, _, lo, hi in _param_fields():
        assert math.isfinite(lo) and math.isfinite(hi), f"recipe parameter {key} of {method} has no range"
    swept = {case.values[0] for case in CASES}
    assert swept >= {(c,) for c in ("distill", "label", "eval", "experts", "report", "gradcam", "run", "squeeze", "recover", "diversity")}
    assert len([c for c in swept if c[0] == "experiment"]) == 10
    print(f"{len(CASES)} option cases + {len(PARAM_CASES)} --param cases")


def test_experts_with_zero_experts_is_refused(capsys, sealed):
    """Was an UnboundLocalError."""
    code, err = ladd_main(capsys, "experts", "--dataset", "digits", "--num-experts", "0", "--out", sealed / "buffer")
    _refused(code, err, "--num-experts")
    assert "give a whole number from 1 to" in err


@pytest.fixture(scope="module")
def observer_cache(tmp_path_factory):
    """One cache for the LIC and RDED runs: they share their observer (one cached expert)."""
    return tmp_path_factory.mktemp("observer-cache")


@pytest.mark.parametrize("method", ["lic", "rded"])
def test_robust_eval_of_region_labelled_artifacts(capsys, tmp_path, monkeypatch, observer_cache, method):
    """Was a KeyError: the random reference subset gets region labels from the artifact's own
    observer on the same tile grid, and DD-Ranking's scores are computed."""
    monkeypatch.setenv("LADD_CACHE", str(observer_cache))
    art = tmp_path / "art"
    extra = ["--param", "compensate=false"] if method == "lic" else ["--param", "candidates=20", "--param", "crops=2"]
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--images", method, *extra, "--out", art)
    assert code == 0, err
    code, err = ladd_main(
        capsys,
        "eval",
        art,
        "--robust",
        "--model",
        "convnet-w32",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--real-epochs",
        "1",
        "--out",
        tmp_path / "ev",
    )
    assert code == 0, err
    scores = json.loads((tmp_path / "ev" / "results.json").read_text())["robustness"]
    assert scores["method"] == "local-dense" and scores["runs"] == 1 and 0 <= scores["lrs_mean"] <= 1
    loaded = load_artifact(art)
    rnd = pipeline.random_counterpart(loaded, pipeline.load_source(pipeline.source_of(loaded)), Runtime())
    lab = rnd.manifest["labels"]
    assert lab["method"] == "region" and lab["subsample"] == loaded.manifest["labels"]["subsample"]
    assert rnd.dense_labels.shape == loaded.dense_labels.shape and not rnd.images.equal(loaded.images)
    assert lab["observer"]["checkpoint_sha256"] == loaded.manifest["labels"]["observer"]["checkpoint_sha256"]


# --- paths and environment variables: a mistyped one is refused on one line, naming it -----------

WRITTEN_FOLDERS = ("--labeler-dir", "--teacher-dir")  # str options naming a folder ladd writes
READ_PATHS = ("--data-dir", "--buffer", "--import-path", "--labeler-weights", "--teacher-weights")  # str options naming an input


def _takes_path(annotation) -> bool:
    return annotation is Path or any(_takes_path(a) for a in typing.get_args(annotation))


def _path_cases():
    cases = []
    for path, cmd in _commands():
        for p in cmd.params:
            if _takes_path(p.type_descriptor.annotation) or p.opts[0] in (*WRITTEN_FOLDERS, *READ_PATHS):
                name = p.opts[0] if p.param_type_name == "option" else p.name.upper()
                cases += [pytest.param(path, p, v, id=f"{' '.join(path)} {name}={v!r}") for v in ("", "   ")]
    return cases


@pytest.mark.parametrize("path,param,value", _path_cases())
def test_an_empty_or_blank_path_is_refused_on_one_line(capsys, sealed, artifact, path, param, value):
    """`--out ""` was read as the current folder: written into, or an 'unexpected ValueError' on its
    empty name; "   " made a folder named with spaces."""
    if param.param_type_name == "option":
        positional = [artifact.parent] if path[-1] == "leaderboard" else _positional(path, artifact)
        other_out = ["--out", sealed / "out"] if param.opts[0] != "--out" and any("--out" in q.opts for q in COMMANDS[path].params) else []
        code, err = ladd_main(capsys, *path, *positional, param.opts[0], value, *other_out)
        _refused(code, err, param.opts[0])
    else:
        code, err = ladd_main(capsys, *path, value)
        _refused(code, err, param.name.upper())
    assert "empty" in err or "blank" in err, err


def test_the_path_sweep_covers_every_output():
    swept = {(c.values[0], c.values[1].opts[0]) for c in _path_cases()}
    for command in ("distill", "label", "eval", "run", "report", "experts", "diversity", "export", "gradcam", "recover"):
        assert ((command,), "--out") in swept
    for command in (("leaderboard",), ("teachers",), ("cache", "ls"), ("data", "info")):
        assert (command, "--json") in swept
    assert (("label",), "--labeler-dir") in swept and (("diversity",), "--teacher-dir") in swept
    for command, option in (("distill", "--data-dir"), ("distill", "--buffer"), ("run", "--import-path"), ("label", "--labeler-weights")):
        assert ((command,), option) in swept


@pytest.fixture
def obstacles(tmp_path):
    """A non-empty folder and a file of the user's, where ladd is told to write; checked untouched afterwards."""
    folder, file = tmp_path / "obstacles" / "folder", tmp_path / "obstacles" / "notes.txt"
    folder.mkdir(parents=True)
    (folder / "keep").write_text("mine")
    file.write_text("mine")
    yield folder, file
    assert sorted(p.name for p in folder.iterdir()) == ["keep"] and file.read_text() == "mine"


def _in_the_way_cases():
    """(arguments, option, which obstacle) – a folder where a file is written, a file where a folder is."""
    return [
        (["diversity", "ART", "--out", "FOLDER"], "--out", "FOLDER"),
        (["leaderboard", "RUNS", "--json", "FOLDER"], "--json", "FOLDER"),
        (["cache", "ls", "--json", "FOLDER"], "--json", "FOLDER"),
        (["diversity", "ART", "--out", "FILE"], "--out", "FILE"),  # a file ladd did not write: never replaced
        (["leaderboard", "RUNS", "--json", "FILE"], "--json", "FILE"),
        (["cache", "ls", "--json", "FILE/x.json"], "--json", "FILE"),
        (["eval", "ART", "--out", "FILE"], "--out", "FILE"),
        (["run", "--dataset", "digits", "--out", "FILE"], "--out", "FILE"),
        (["report", "RUNS", "--out", "FILE"], "--out", "FILE"),
        (["experts", "--dataset", "digits", "--out", "FILE"], "--out", "FILE"),
        (["distill", "--dataset", "digits", "--out", "FILE/art"], "--out", "FILE"),
        (["label", "ART", "--labeler-dir", "FILE"], "--labeler-dir", "FILE"),
        (["diversity", "ART", "--teacher-dir", "FILE"], "--teacher-dir", "FILE"),
    ]


@pytest.mark.parametrize("args,option,obstacle", _in_the_way_cases(), ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_output_path_in_the_way_is_refused_naming_the_option(capsys, sealed, artifact, obstacles, args, option, obstacle):
    """Was `Is a directory`/`File exists`/`Not a directory` naming a temporary file, or a file of
    the user's silently overwritten (diversity --out, leaderboard --json)."""
    folder, file = obstacles
    where = {"ART": artifact, "RUNS": artifact.parent, "FOLDER": folder, "FILE": file}
    args = [str(where.get(a, a)).replace("FILE", str(file)) for a in args]
    code, err = ladd_main(capsys, *args)
    assert code == ArtifactError.exit_code and err.startswith("error: ") and err.count("\n") == 1, err
    assert option in err and str(where[obstacle]) in err and ".tmp" not in err and "unexpected" not in err, err


@pytest.mark.parametrize(
    "args,inside",
    [
        (("eval", "ART", "--out", "ART"), ""),
        (("eval", "ART", "--out", "ART/eval"), "/eval"),
        (("run", "--dataset", "digits", "--out", "ART"), ""),
        (("distill", "--dataset", "digits", "--out", "ART/inner"), "/inner"),
        (("label", "ART", "--labeler-dir", "ART/labeler"), "/labeler"),
        (("export", "ART", "--out", "ART/set.npz"), "/set.npz"),
        (("teachers", "--json", "ART/teachers.json"), "/teachers.json"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_an_output_in_an_artifact_folder_is_refused(capsys, sealed, artifact, args, inside):
    """`ladd eval ART --out ART` wrote its results into the artifact, and the next `ladd label ART`
    replaced the folder whole: the results were gone."""
    code, err = ladd_main(capsys, *[str(artifact) + a[3:] if a.startswith("ART") else a for a in args])
    where = "lies inside the artifact" if inside else "is the artifact"
    assert code == ArtifactError.exit_code and err.count("\n") == 1, err
    assert f"{artifact}{inside} {where} {artifact}, which ladd replaces whole" in err, err


def test_a_folder_with_a_manifest_of_another_kind_is_not_an_artifact(tmp_path):
    from ladd.cli.common import artifact_around

    (tmp_path / "manifest.json").write_text('{"name": "a web app", "files": []}')
    assert artifact_around(tmp_path / "runs" / "x") is None
    (tmp_path / "manifest.json").write_text('{"ladd_version": "0.1.0", "files": {}}')
    assert artifact_around(tmp_path / "runs" / "x") == tmp_path


@pytest.mark.parametrize("command", ["teachers", "leaderboard"])
def test_a_listing_of_a_folder_that_does_not_exist_is_refused(capsys, tmp_path, command):
    """`ladd teachers /nonexistent` printed an empty table and exited 0, as if nothing were trained there."""
    code, err = ladd_main(capsys, command, tmp_path / "nowhere")
    assert code == ArtifactError.exit_code and err.count("\n") == 1, err
    assert f"{tmp_path / 'nowhere'} is not a folder" in err, err


def test_a_json_file_ladd_wrote_is_replaced(capsys, tmp_path):
    listing = tmp_path / "ls.json"
    listing.write_text('{"root": "elsewhere", "entries": []}\n')
    code, err = ladd_main(capsys, "cache", "ls", "--json", listing)
    assert code == 0, err
    assert json.loads(listing.read_text())["root"] == str(tmp_path / "cache")


@pytest.mark.parametrize(
    "env",
    [
        {"WORLD_SIZE": "abc"},
        {"WORLD_SIZE": ""},
        {"WORLD_SIZE": "0"},
        {"RANK": "-1"},
        {"WORLD_SIZE": "2", "LADD_DIST_TIMEOUT_MIN": "abc"},
        {"WORLD_SIZE": "2", "LADD_DIST_TIMEOUT_MIN": "nan"},
        {"WORLD_SIZE": "2", "LADD_DIST_TIMEOUT_MIN": "0"},
        {"WORLD_SIZE": "2", "LADD_DIST_TIMEOUT_MIN": "inf"},
    ],
    ids=lambda env: " ".join(f"{k}={v}" for k, v in env.items()),
)
def test_a_bad_launch_variable_is_refused_naming_it(capsys, monkeypatch, sealed, artifact, env):
    """Was an 'unexpected ValueError' and, for WORLD_SIZE, a traceback as the process exited."""
    monkeypatch.setattr(dist, "exit", sys.exit)  # with WORLD_SIZE > 1 a rank ends with os._exit
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, err = ladd_main(capsys, "info", artifact)
    name = list(env)[-1]
    _refused(code, err, f"{name}={env[name]!r}")
    assert "fix or unset it" in err, err


def test_the_current_folder_as_artifact_out_is_refused_on_one_line(capsys, tmp_path, monkeypatch):
    """`distill --out .` was an 'unexpected ValueError' naming the log file of an artifact without a name."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", ".")
    assert code == ArtifactError.exit_code and err.count("\n") == 1 and "is not a ladd artifact" in err, err
