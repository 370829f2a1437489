"""benchmarks/accuracy_levers.py: its sweep grammar, and one tiny sweep on digits end to end (cells
as run folders, a label-only cell without the hard-label baseline, each cell's wall time, a re-run
that trains nothing, a refusal to mix cells of other images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BENCHMARKS, benchmark

BENCH = BENCHMARKS / "accuracy_levers.py"


def test_a_sweep_is_the_base_one_cell_per_value_and_one_per_combination():
    cells = benchmark("accuracy_levers")._cells(
        ["local_weight=2,learned", "grid=7+keep_soft=true", "model=convnet", "labeler_lr=0.1+labeler_decay=true"]
    )
    assert cells == [
        ("base", {}),
        ("local_weight=2", {"local_weight": 2.0}),
        ("local_weight=learned", {"local_weight": "learned"}),
        ("grid=7+keep_soft=true", {"grid": 7, "keep_soft": True}),
        ("model=convnet", {"model": ("convnet",)}),
        ("labeler_lr=0.1+labeler_decay=true", {"labeler_lr": 0.1, "labeler_decay": True}),
    ]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("width=3", "unknown lever 'width'"),
        ("grid=3,5+local_weight=2", "one value per lever"),
        ("labeler_decay=yes", "labeler_decay=yes: give true or false"),
    ],
)
def test_a_bad_sweep_item_is_refused_with_its_text(sweep, message):
    with pytest.raises(SystemExit, match=message):
        benchmark("accuracy_levers")._cells([sweep])


def test_a_cell_records_the_command_that_makes_it_alone(monkeypatch):
    argv = ["--images", "im", "--sweep", "grid=3,7", "ema=0.9", "--epochs", "2", "--sweep=x", "--out", "o.json"]
    monkeypatch.setattr(sys, "argv", ["benchmarks/accuracy_levers.py", *argv])
    command = benchmark("accuracy_levers")._cell_command
    assert command("grid=7") == "python benchmarks/accuracy_levers.py --images im --epochs 2 --out o.json --sweep grid=7"
    assert command("base") == "python benchmarks/accuracy_levers.py --images im --epochs 2 --out o.json"


def _run(*args, cwd):
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_tiny_sweep_records_each_cell_and_resumes_without_training(tmp_path):
    for seed in (0, 1):
        distill = ["distill", "--dataset", "digits", "--ipc", "1", "--seed", str(seed), "--out", tmp_path / f"images{seed}"]
        made = subprocess.run([sys.executable, "-m", "ladd", *distill], capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stderr
    args = ["--grid", "2", "--labeler-epochs", "1", "--epochs", "2", "--seeds", "1", "--select-lr", "0.01", "--val-per-class", "5"]
    labeler = "labeler_lr=0.02+labeler_decay=true"
    common = [*args, "--runs", tmp_path / "cells", "--sweep", "local_weight=2", labeler, "--device", "cpu"]
    first = _run("--images", tmp_path / "images0", *common, "--out", tmp_path / "levers.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = json.loads((tmp_path / "levers.json").read_text())
    cells = [("base", "baseline"), ("base", "ladd"), ("local_weight=2", "ladd"), (labeler, "ladd")]
    assert [(c["cell"], c["method"]) for c in out["cells"]] == cells
    assert out["cells"][2]["levers"] == {"local_weight": 2.0}
    assert out["cells"][3]["levers"] == {"labeler_lr": 0.02, "labeler_decay": True}
    trained = json.loads((tmp_path / "cells" / labeler / "artifact" / "manifest.json").read_text())["labels"]["config"]["labeler"]
    base = json.loads((tmp_path / "cells" / "base" / "artifact" / "manifest.json").read_text())["labels"]["config"]["labeler"]
    assert (trained["lr"], trained["decay"]) == (0.02, True) and (base["lr"], base["decay"]) == (0.01, False)
    for c in out["cells"]:  # a cell's wall time: its sittings' sum, as its wall.json keeps it
        wall = json.loads((tmp_path / "cells" / c["cell"] / "wall.json").read_text())
        assert c["cell_seconds"] == wall["wall_s"] > 0 and wall["sittings"] == 1
    assert (out["image_method"], out["image_params"], out["ipc"]) == ("random", {}, 1)
    assert {Path(b["run_dir"]).name for b in out["best"]} <= {"base", "local_weight=2", labeler}
    for c in out["cells"]:  # the bytes a cell stores: its images and the labels its method reads, as saved
        folder = tmp_path / "cells" / c["cell"]
        storage = json.loads((folder / "artifact" / "manifest.json").read_text())["storage"]
        row = next(r for r in json.loads((folder / "results.json").read_text())["rows"] if r["method"] == c["method"])
        assert c["bytes"] == storage["images"]["zip"] + sum(storage[k]["zip"] for k in row["label_components"] if k in storage)
    assert out["cells"][1]["bytes"] > out["cells"][0]["bytes"]  # LADD's dense labels count
    for b in out["best"]:  # the command of the best cell alone, as its results.json records it
        assert b["command"] == json.loads((Path(b["run_dir"]) / "results.json").read_text())["command"]
        assert any(f"--sweep {c}" in b["command"] for c in ("local_weight=2", labeler)) or "--sweep" not in b["command"]

    again = _run("--images", tmp_path / "images0", *common, "--out", tmp_path / "again.json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["cells"] == out["cells"]  # nothing retrained

    other = _run("--images", tmp_path / "images1", *common, "--out", tmp_path / "other.json", cwd=tmp_path)
    assert other.returncode != 0 and "holds a cell of other images" in other.stderr
    assert not (tmp_path / "other.json").exists()
