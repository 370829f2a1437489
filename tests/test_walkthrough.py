"""The README's five-minute walkthrough runs as written (with tiny training budgets appended) and
leaves every file and folder its steps say they write."""

import json
import re
import shlex
from pathlib import Path

import pytest

from conftest import ladd_main

README = Path(__file__).resolve().parents[1] / "README.md"
# Appended to the README's own command lines: the same options the walkthrough uses, smaller budgets
TINY = {
    "distill": ["--param", "iterations=4", "--param", "checkpoint_every=2"],
    "label": ["--labeler-epochs", "2"],
    "eval": ["--seeds", "1", "--epochs", "2"],
    "report": [],
}


def walkthrough_steps() -> list[tuple[list[list[str]], str]]:
    """Each numbered step between the walkthrough markers: its `ladd` command lines and its prose."""
    section = re.search(r"<!-- walkthrough -->\n(.*?)<!-- /walkthrough -->", README.read_text(), re.S)
    assert section, "README.md lost its <!-- walkthrough --> markers"
    steps = []
    for step in re.split(r"^\d+\. ", section[1], flags=re.M)[1:]:
        code = "\n".join(re.findall(r"```bash\n(.*?)```", step, re.S))
        commands = [shlex.split(line, comments=True) for line in code.splitlines()]
        steps.append(([c for c in commands if c], re.sub(r"```bash\n.*?```", "", step, flags=re.S)))
    return steps


def said_to_write(prose: str, folder: str | None) -> tuple[list[str], str | None]:
    """The paths a step's prose names in backticks: folders (`runs/x/`) and files, which live in the
    folder the step names, or else in the one an earlier step named ("in the same folder")."""
    names = re.findall(r"`([\w./-]+)`", prose)
    folders = [n for n in names if n.endswith("/")]
    folder = folders[-1] if folders else folder
    files = [n for n in names if re.search(r"\.(safetensors|json|md|png|csv)$", n)]
    assert folder or not files, f"the walkthrough names {files} before any folder"
    return folders + [folder + f for f in files], folder


def test_the_readme_walkthrough_runs_stage_by_stage(tmp_path, monkeypatch, capsys):
    steps = walkthrough_steps()
    assert [cmds[0][1] for cmds, _ in steps] == ["distill", "label", "eval", "report"]
    monkeypatch.chdir(tmp_path)
    folder = None
    for commands, prose in steps:
        for command in commands:
            assert command[0] == "ladd", f"a walkthrough line is not a ladd command: {shlex.join(command)}"
            code, err = ladd_main(capsys, *command[1:], *TINY[command[1]])
            assert code == 0, f"{shlex.join(command)} failed: {err}"
        paths, folder = said_to_write(prose, folder)
        assert paths, f"step `{shlex.join(commands[0])}` does not say what it writes"
        missing = [p for p in paths if not (tmp_path / p).exists()]
        assert not missing, f"`{shlex.join(commands[0])}` did not write {missing}"
    rows = json.loads((tmp_path / "runs/dm10-eval/results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"baseline", "ladd"}


@pytest.mark.parametrize("stage", ["distill", "label", "eval", "report"])
def test_each_walkthrough_step_says_what_it_writes(stage):
    prose = next(p for cmds, p in walkthrough_steps() if cmds[0][1] == stage)
    assert re.search(r"≈ \d+ s", prose), f"the {stage} step does not say how long it takes"
    assert said_to_write(prose, "runs/")[0], f"the {stage} step names no file or folder"
