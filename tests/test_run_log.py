"""What a run leaves in its log when stderr is not a terminal (a batch job's log file): one line for
every checkpoint written and for every resume, occasional progress lines for long loops, and
`--resume` that starts afresh when nothing was saved yet (a requeue after a kill before the first
checkpoint), with the same result as a run without it."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import ladd_main
from ladd.core import progress
from ladd.core.runtime import Runtime
from ladd.experts import build_for
from ladd.train.loop import Recipe, TrainData, train
from ladd.train.terms import method_terms

DM = [
    "distill",
    "--dataset",
    "digits",
    "--ipc",
    "1",
    "--images",
    "dm",
    "--model",
    "convnet-w32",
    "--device",
    "cpu",
    "--param",
    "iterations=4",
    "--param",
    "checkpoint_every=2",
    "--param",
    "batch_real=4",
    "--param",
    "compile=false",
]


def test_resume_without_a_checkpoint_starts_fresh_with_the_same_artifact(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LADD_CACHE", str(tmp_path / "cache-a"))
    code, err = ladd_main(capsys, *DM, "--out", tmp_path / "plain")
    assert code == 0, err
    assert re.search(r"^DM IPC 1: checkpoint: iteration 2/4 -> \S+images_state\.safetensors$", err, re.M), err
    assert "checkpoint: iteration 4/4 -> " in err and "resuming from" not in err and "--resume" not in err

    monkeypatch.setenv("LADD_CACHE", str(tmp_path / "cache-b"))  # nothing saved here yet: a requeued job killed early
    code, err = ladd_main(capsys, *DM, "--resume", "--out", tmp_path / "resumed")
    assert code == 0, err
    assert re.search(r"^DM IPC 1: --resume, but no checkpoint in \S+ yet: starting from iteration 0/4$", err, re.M), err
    plain, resumed = tmp_path / "plain", tmp_path / "resumed"
    assert sorted(p.name for p in plain.iterdir()) == sorted(p.name for p in resumed.iterdir())
    for p in plain.iterdir():
        assert p.read_bytes() == (resumed / p.name).read_bytes(), p.name

    code, err = ladd_main(capsys, *DM, "--resume", "--out", tmp_path / "again")  # now there is one: it is used
    assert code == 0, err
    assert re.search(r"^DM IPC 1: resuming from \S+images_state\.safetensors \(iteration 4/4\)$", err, re.M), err


def test_trainer_logs_each_checkpoint_and_its_resume(capsys, tmp_path, toy):
    data = TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std)
    recipe = Recipe(epochs=2, lr=0.05, batch_size=8)
    train(
        build_for(toy, "convnet-w32", 0),
        data,
        method_terms("baseline"),
        recipe,
        seed=0,
        runtime=Runtime(),
        description="labeler",
        checkpoint_dir=tmp_path,
    )
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"labeler: checkpoint: epoch {e}/2 -> {tmp_path / f'epoch_00{e}.safetensors'}" for e in range(3)]
    train(
        build_for(toy, "convnet-w32", 0),
        data,
        method_terms("baseline"),
        recipe,
        seed=0,
        runtime=Runtime(),
        description="labeler",
        checkpoint_dir=tmp_path,
    )
    assert capsys.readouterr().err.splitlines() == [f"labeler: resuming from {tmp_path / 'epoch_002.safetensors'} (epoch 2/2)"]


def test_long_loops_print_occasional_lines_without_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("LADD_NO_PROGRESS", raising=False)
    with progress.bar("short", 100) as advance:  # a loop done within seconds stays silent
        for _ in range(100):
            advance()
    assert capsys.readouterr().err == ""

    monkeypatch.setattr(progress, "LINE_MIN_S", 0.0)  # as if each step took long: a line per 10 %
    with progress.bar("work", 50) as advance:
        for _ in range(50):
            advance(status="loss 0.5")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and all(
        re.fullmatch(r"work: \d+/50 \(\d+%\) · loss 0\.5 · 0:00:00 elapsed(, ~0:00:00 left)?", x) for x in lines
    ), lines
    assert lines[0].startswith("work: 5/50 (10%)") and lines[-1].startswith("work: 50/50 (100%)")

    monkeypatch.setattr(progress, "LINE_MIN_S", 1e9)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # and at least every LINE_EVERY_S, however slow
    with progress.bar("slow", 10**6) as advance:
        advance(40)  # a resumed loop skips what was done
        advance()
        advance()
    assert [x.split(" · ")[0] for x in capsys.readouterr().err.splitlines()] == [
        "slow: 40/1000000 (0%)",
        "slow: 41/1000000 (0%)",
        "slow: 42/1000000 (0%)",
    ]

    monkeypatch.setenv("LADD_NO_PROGRESS", "1")  # silenced; log lines are not
    with progress.bar("quiet", 10) as advance:
        for _ in range(10):
            advance()
    progress.log("checkpoint: a [b] path")
    assert capsys.readouterr().err == "checkpoint: a [b] path\n"


def test_a_sitting_adds_its_wall_time_to_the_sum_and_rewrites_it_while_it_runs(tmp_path):
    path = tmp_path / "wall.json"
    path.write_text(json.dumps({"wall_s": 100.0, "sittings": 1}))  # an earlier sitting
    with progress.sitting(path, every=0.01):
        time.sleep(0.2)
        during = json.loads(path.read_text())  # what a kill now would leave
    after = json.loads(path.read_text())
    assert during["sittings"] == after["sittings"] == 2
    assert 100.0 < during["wall_s"] <= after["wall_s"] < 100.0 + 60
    with pytest.raises(RuntimeError), progress.sitting(path, every=60):  # a failed sitting still counts
        raise RuntimeError
    assert json.loads(path.read_text())["sittings"] == 3
