"""The Python API (`ladd.api`): its example session runs, and it makes what the CLI makes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ladd import api
from ladd.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "notebook_session.py"
W32 = "convnet-w32"


def test_notebook_session_example_runs_and_writes_a_run_and_a_report(tmp_path):
    res = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    run = tmp_path / "out" / "run"
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["baseline", "ladd"] and all(r["n_seeds"] == 1 for r in rows)
    assert rows[0]["artifact"] == str((run / "artifact").resolve())
    assert api.load_artifact(run / "artifact").dense_labels.shape == (10, 16, 10)
    assert "| ladd |" in (tmp_path / "out" / "report" / "report.md").read_text()
    assert "labels: ladd · N=4" in res.stdout


def _cli(*args):
    result = CliRunner().invoke(app, [*map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def _files(path: Path) -> dict:
    return {name: f["sha256"] for name, f in json.loads((path / "manifest.json").read_text())["files"].items()}


def test_api_stages_make_the_cli_s_artifact_and_results(tmp_path):
    _cli("distill", "--dataset", "digits", "--ipc", "1", "--model", W32, "--seed", "3", "--out", tmp_path / "cli", "--device", "cpu")
    source = api.SourceConfig(dataset="digits")
    data = api.load_dataset("digits")
    art = api.distill(data, api.ImagesConfig(ipc=1, model=W32, seed=3), source, api.runtime("cpu"))
    api.save_artifact(tmp_path / "api", art)
    cli_manifest, api_manifest = (json.loads((tmp_path / p / "manifest.json").read_text()) for p in ("cli", "api"))
    assert _files(tmp_path / "api") == _files(tmp_path / "cli")
    assert api_manifest["source"] == cli_manifest["source"] and api_manifest["images"] == cli_manifest["images"]

    _cli("label", tmp_path / "cli", "--model", W32, "--labeler-epochs", "1", "--grid", "4", "--device", "cpu")
    cfg = api.LabelConfig(n=4, labeler=api.ExpertConfig(model=W32, epochs=1))
    art = api.load_artifact(api.save_artifact(tmp_path / "api", api.label(art, data, cfg)))
    assert _files(tmp_path / "api") == _files(tmp_path / "cli")

    _cli(
        "eval",
        tmp_path / "cli",
        "--model",
        W32,
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--crops-per-step",
        "2",
        "--out",
        tmp_path / "cli-run",
        "--device",
        "cpu",
    )
    cfg = api.eval_config(methods=("baseline", "ladd"), models=(W32,), seeds=1, epochs=1, crops_per_step=2)
    rows = api.evaluate(art, data, cfg)
    cli_rows = json.loads((tmp_path / "cli-run" / "results.json").read_text())["rows"]
    assert [(r["method"], r["accs"], r["flops"]) for r in rows] == [(r["method"], r["accs"], r["flops"]) for r in cli_rows]

    api.save_results(tmp_path / "api-run", rows, art, tmp_path / "api", cfg)
    written = api.report([tmp_path / "api-run", tmp_path / "cli-run"], tmp_path / "report", images=1)
    assert tmp_path / "report" / "report.md" in written


def test_describe_is_what_info_prints(tmp_path):
    _cli("distill", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "art", "--device", "cpu")
    shown = " ".join(_cli("info", tmp_path / "art").output.split())
    header, *lines = api.describe(api.load_artifact(tmp_path / "art"))
    assert f"· {header} · hashes verified" in shown and all(" ".join(line.split()) in shown for line in lines)


def test_eval_config_takes_the_preset_and_what_is_given():
    quick, paper = api.PRESETS["quick"], api.PRESETS["paper"]
    cfg = api.eval_config(seeds=1)
    assert (cfg.models, cfg.seeds, cfg.crops_per_step, cfg.default_protocol) == ((quick.model,), 1, quick.crops_per_step, quick.protocol)
    assert api.eval_config("paper").models == (paper.model,)


def test_the_readme_python_session_runs_as_written(tmp_path, monkeypatch):
    """The README's `ladd.api` block, executed in an empty folder: it passes the artifact in memory
    to save_results (which failed with KeyError 'files' before save_results read the saved copy)."""
    import re

    import pytest

    from ladd.core.errors import ArtifactError

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "from ladd import api" in b]
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    saved = api.load_artifact(tmp_path / "run" / "artifact")
    assert {r["artifact_sha256"] for r in rows} == {saved.manifest["files"]["images.safetensors"]["sha256"]}
    assert (tmp_path / "report").is_dir()
    other = api.distill(scope["data"], api.ImagesConfig(method="random", ipc=1, seed=1), scope["source"])
    with pytest.raises(ArtifactError, match="holds other images than the artifact evaluated"):
        api.save_results("run2", scope["rows"], other, "run/artifact", scope["cfg"])
