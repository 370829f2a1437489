"""benchmarks/paper_protocol.py: a failed step's error, and a tiny run end to end (its wall time over sittings)."""

import json
import sys

import pytest
from conftest import benchmark

paper = benchmark("paper_protocol")


def test_a_failed_step_stops_with_one_line_naming_it(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LADD_CACHE", str(tmp_path / "cache"))  # no expert trajectories there
    argv = ["paper_protocol.py", "--dataset", "digits", "--ipc", "1", "--images", "mtt", "--runs", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path / "paper.json")])
    with pytest.raises(SystemExit, match=r"`ladd distill --dataset digits --ipc 1 --images mtt .*` failed \(exit 4\)"):
        paper.main()
    assert "ladd experts --dataset digits" in capfd.readouterr().err  # ladd's own error says what to run
    assert not (tmp_path / "paper.json").exists()


def test_digits_ipc1_cell_end_to_end_then_skipped(tmp_path, monkeypatch, capsys):
    out = tmp_path / "paper.json"
    argv = ["paper_protocol.py", "--dataset", "digits", "--ipc", "1", "--seeds", "1", "--epochs", "2"]
    argv += ["--labeler-epochs", "2", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    paper.main()
    (cell,) = json.loads(out.read_text())["cells"]
    assert (cell["images"], cell["ipc"], cell["labeler_epochs"], cell["sittings"]) == ("random", 1, 2, 1)
    assert [r["method"] for r in cell["rows"]] == ["baseline", "ladd", "baseline++"]
    assert cell["wall_s"] == round(json.loads((tmp_path / "runs" / "digits-random-ipc1-labeler2" / "wall.json").read_text())["wall_s"])
    capsys.readouterr()
    paper.main()  # the cell is done: nothing runs
    assert "$ ladd" not in capsys.readouterr().out
    assert json.loads(out.read_text())["cells"] == [cell]

    monkeypatch.setattr(sys, "argv", [*argv[:-5], "3", *argv[-4:]])  # another sweep into the same file
    paper.main()
    data = json.loads(out.read_text())
    assert [c["labeler_epochs"] for c in data["cells"]] == [2, 3]
    assert "--labeler-epochs 2" in cell["made_by"] and "--labeler-epochs 3" in data["cells"][1]["made_by"]
    assert data["command"] == f"{cell['made_by']} && {data['cells'][1]['made_by']}"  # reproduces every cell


def test_nproc_shares_the_students_over_torchrun_ranks_with_one_process_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # each rank's threads, as the benchmark's docstring says to run it
    base = ["paper_protocol.py", "--dataset", "digits", "--ipc", "1", "--seeds", "2", "--epochs", "2", "--labeler-epochs", "2"]
    monkeypatch.setattr(sys, "argv", [*base, "--nproc", "0", "--out", str(tmp_path / "none.json")])
    with pytest.raises(SystemExit):
        paper.main()
    assert "--nproc 0: give 1 (one process) or more torchrun ranks" in capsys.readouterr().err
    monkeypatch.delenv("LADD_DIST_TIMEOUT_MIN", raising=False)
    real_run, waits = paper.subprocess.run, []

    def run(argv, env):
        waits.append((argv[2], env.get("LADD_DIST_TIMEOUT_MIN")))
        return real_run(argv, env=env)

    monkeypatch.setattr(paper.subprocess, "run", run)
    cells = []
    for nproc in ("1", "2"):
        out = tmp_path / f"paper{nproc}.json"
        monkeypatch.setattr(sys, "argv", [*base, "--nproc", nproc, "--runs", str(tmp_path / f"runs{nproc}"), "--out", str(out)])
        paper.main()
        (cell,) = json.loads(out.read_text())["cells"]
        cells.append(cell)
    assert "$ torchrun --standalone --nproc_per_node 2 -m ladd eval " in capsys.readouterr().out
    assert [r["method"] for r in cells[1]["rows"]] == ["baseline", "ladd", "baseline++"]
    assert cells[0]["rows"] == cells[1]["rows"]
    # torchrun's ranks wait a day for each other (a rank done early waits for the last student)
    assert waits == [("ladd", None)] * 3 + [("ladd", None), ("ladd", None), ("torch.distributed.run", str(24 * 60))]
