"""`ladd leaderboard`: the best row per (dataset, IPC, method) is chosen on validation accuracy
only, never on test accuracy; unvalidated groups are listed as unranked."""

from __future__ import annotations

import json
import os

from conftest import ladd_main
from ladd.report.leaderboard import leaderboard, rank, val_acc


def test_leaderboard_chooses_on_validation_and_names_the_command(tmp_path, capsys):
    art = tmp_path / "art"
    assert ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", art)[0] == 0
    assert ladd_main(capsys, "label", art, "--grid", "2", "--labeler-epochs", "1")[0] == 0
    quick = ("--epochs", "2", "--seeds", "1", "--val-per-class", "5")
    for name, extra in {"a": ("--select-lr", "0.001"), "b": ("--select-lr", "0.1"), "c": ()}.items():
        methods = "baseline,ladd" if extra else "baseline,global-soft"
        assert ladd_main(capsys, "eval", art, "--methods", methods, *quick, *extra, "--out", tmp_path / name)[0] == 0
    runs = [tmp_path / n for n in "abc"]

    board = leaderboard(runs)
    rows = {
        (r["run"], r["method"]): r
        for n in "abc"
        for r in json.loads((tmp_path / n / "results.json").read_text())["rows"]
        for r in [{**r, "run": n}]
    }
    best = {(e["dataset"], e["ipc"], e["method"]): e for e in board["best"]}
    assert set(best) == {("digits", 1, "baseline"), ("digits", 1, "ladd")} and len(board["best"]) == 2
    for method in ("baseline", "ladd"):
        a, b = rows[("a", method)], rows[("b", method)]
        winner = "a" if val_acc(a) >= val_acc(b) else "b"  # validation decides, whatever the test accuracies say
        assert best[("digits", 1, method)]["run_dir"] == str(tmp_path / winner)
        assert best[("digits", 1, method)]["val_acc"] == val_acc(rows[(winner, method)])
        assert best[("digits", 1, method)]["acc_mean"] == rows[(winner, method)]["acc_mean"]
        assert best[("digits", 1, method)]["command"].startswith(f"ladd eval {art} --methods baseline,ladd")
    assert val_acc(rows[("c", "baseline")]) is None  # run c was not validated: a candidate, never chosen
    assert board["unranked"] == [{"dataset": "digits", "ipc": 1, "method": "global-soft", "candidates": 1}]
    assert len(board["entries"]) == 6

    code, err = ladd_main(capsys, "leaderboard", *runs, "--json", tmp_path / "board.json")
    assert code == 0 and "unranked: digits IPC 1 global-soft" in err and "--select-lr" in err
    if "COLUMNS" not in os.environ:  # piped (as here), the table is not squeezed into 80 columns
        assert any(line.count("│") > 10 and "digits" in line and " ± " in line for line in err.splitlines())
    assert json.loads((tmp_path / "board.json").read_text())["best"] == json.loads(json.dumps(board["best"]))

    # a glob over a sweep still running names cells without results.json: skipped with a warning
    running = tmp_path / "running"
    (running / "students").mkdir(parents=True)
    assert leaderboard([*runs, running])["best"] == board["best"] and leaderboard([*runs, running])["skipped"] == [str(running)]
    code, err = ladd_main(capsys, "leaderboard", *runs, running)
    assert code == 0 and f"skipped {running}: no results.json yet" in err and "in 3 runs" in err
    code, err = ladd_main(capsys, "leaderboard", running)
    assert code != 0 and "none of the 1 folder(s) holds a results.json" in err
    code, err = ladd_main(capsys, "leaderboard", *runs, tmp_path / "typo")
    assert code != 0 and "typo is not a folder" in err

    # a run validated on a larger split is the best of that split, never ranked against split 5's rows
    d = tmp_path / "d"
    code, _ = ladd_main(capsys, "eval", art, "--methods", "baseline", *quick[:4], "--val-per-class", "7", "--select-lr", "0.1", "--out", d)
    assert code == 0
    board = leaderboard([*runs, d])
    by_split = {(e["method"], e["val_split"]): e for e in board["best"]}
    assert set(by_split) == {(m, "digits-holdout5s0") for m in ("baseline", "ladd")} | {("baseline", "digits-holdout7s0")}
    assert by_split[("baseline", "digits-holdout5s0")]["run_dir"] == best[("digits", 1, "baseline")]["run_dir"]
    assert by_split[("baseline", "digits-holdout7s0")]["run_dir"] == str(d)
    code, err = ladd_main(capsys, "leaderboard", *runs, d)
    assert code == 0
    if "COLUMNS" not in os.environ:
        assert "holdout7s0" in err and "holdout5s0" in err  # the table names each row's split


def test_rank_breaks_validation_ties_by_bytes_then_flops_and_counts_them():
    def entry(val, nbytes, flops, run):
        key = {"dataset": "mnist5k", "ipc": 10, "method": "ladd", "val_split": "mnist5k-holdout50s0"}
        return {**key, "val_acc": val, "bytes": nbytes, "flops": flops, "run_dir": run}

    entries = [entry(0.978, 100, 2e9, "ep2000"), entry(0.978, 100, 1e9, "ep1000"), entry(0.976, 50, 1e8, "ep300")]
    (best,) = rank(entries)["best"]
    assert best["run_dir"] == "ep1000" and best["val_ties"] == 1  # equal bytes: the fewer FLOPs
    (best,) = rank([*entries, entry(0.978, 90, 3e9, "small")])["best"]
    assert best["run_dir"] == "small" and best["val_ties"] == 2  # bytes before FLOPs
    (best,) = rank([entry(0.979, 200, 5e9, "top"), *entries])["best"]
    assert best["run_dir"] == "top" and best["val_ties"] == 0
