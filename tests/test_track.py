"""Experiment tracking (`ladd.core.track`): per-epoch student curves and final rows to CSV,
TensorBoard or offline W&B. TensorBoard and W&B are optional extras: without them, asking for one
is refused in one line naming the extra."""

import csv
import json
import subprocess
import sys

import pytest

from ladd.artifact import Artifact
from ladd.core import track
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate, train_data, train_students
from ladd.eval.protocols import load_protocol
from ladd.report.results import write_results
from ladd.train.terms import method_terms


def _artifact(toy):
    return Artifact(toy.train.images[::3], toy.train.labels[::3], {"source": {"class_names": list(toy.class_names)}})


def _students(toy, seeds=1, epochs=2):
    """Students trained as `evaluate` trains them, with their TrainLog."""
    recipe = load_protocol("dc-cpu").recipe("convnet-w32", None, epochs=epochs, lr=0.01)
    return train_students(
        train_data(_artifact(toy), toy), method_terms("baseline", None, "mean"), recipe, toy, "convnet-w32", seeds, Runtime(), "baseline"
    ), recipe


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_curves_are_the_trainers_epoch_losses_and_lrs(toy, tmp_path):
    with track.using(track.make_tracker("csv", tmp_path)):
        students, recipe = _students(toy)
    lines = _csv(tmp_path / track.CURVES)
    assert list(lines[0]) == list(track.CURVE_COLUMNS)
    assert [int(r["epoch"]) for r in lines] == [1, 2]
    assert {r["student"] for r in lines} == {"baseline/convnet-w32/seed0"} and {r["run"] for r in lines} == {tmp_path.name}
    assert [float(r["loss"]) for r in lines] == students.log.epoch_loss
    assert [float(r["lr"]) for r in lines] == [recipe.lr_at(e) for e in range(2)]


def test_csv_rows_are_the_written_rows_and_curves_carry_test_accuracy_when_recorded(toy, tmp_path):
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=1, epochs=2, lr=0.01, curve_every=1)
    with track.using(track.make_tracker("csv", tmp_path)):
        rows = evaluate(_artifact(toy), toy, cfg, Runtime())
        write_results(tmp_path, rows, {}, [], "tracked")
    written = _csv(tmp_path / track.ROWS)
    assert len(written) == 1 and written[0]["method"] == "baseline" and float(written[0]["acc_mean"]) == rows[0]["acc_mean"]
    assert "accs" not in written[0]  # nested fields stay in results.json
    curve = [(int(r["epoch"]), float(r["test_acc"])) for r in _csv(tmp_path / track.CURVES)]
    assert curve == [(p["epoch"], p["acc_mean"]) for p in rows[0]["curve"]]


def test_no_tracker_unless_asked(tmp_path):
    assert track.make_tracker(None, tmp_path) is None and track.current() is None
    with pytest.raises(LaddError, match="--track nope: choose one of csv, tensorboard, wandb"):
        track.make_tracker("nope", tmp_path)


@pytest.mark.parametrize("kind, module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_a_missing_extra_is_refused_in_one_line(kind, module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # what an install without the extra sees
    with pytest.raises(LaddError, match=rf"pip install 'ladd\[{kind}\]'"):
        track.make_tracker(kind, tmp_path)


def test_tensorboard_event_file_holds_the_curves_and_rows(toy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=1, epochs=2, lr=0.01)
    rows = evaluate(_artifact(toy), toy, cfg, Runtime())  # untracked: its student would add a second curve of the same name
    with track.using(track.make_tracker("tensorboard", tmp_path)):
        students, _ = _students(toy)
        write_results(tmp_path, rows, {}, [], "tracked")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("baseline/convnet-w32/seed0/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx(students.log.epoch_loss)  # float32 in the event file
    assert "rows/baseline · convnet-w32/acc_mean" in events.Tags()["scalars"]


def test_wandb_runs_offline_into_the_run_folder(toy, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    with track.using(track.make_tracker("wandb", tmp_path)):
        _students(toy)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


def test_cli_eval_track_csv(tmp_path):
    art = tmp_path / "art"
    ladd = [sys.executable, "-m", "ladd"]
    assert subprocess.run([*ladd, "distill", "--dataset", "digits", "--ipc", "1", "--out", art], capture_output=True).returncode == 0
    out = tmp_path / "ev"
    res = subprocess.run(
        [
            *ladd,
            "eval",
            art,
            "--model",
            "convnet-w32",
            "--seeds",
            "1",
            "--epochs",
            "2",
            "--methods",
            "baseline",
            "--track",
            "csv",
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert [r["epoch"] for r in _csv(out / track.CURVES)] == ["1", "2"]
    assert [r["acc_mean"] for r in _csv(out / track.ROWS)] == [
        str(r["acc_mean"]) for r in json.loads((out / "results.json").read_text())["rows"]
    ]
    res = subprocess.run([*ladd, "eval", art, "--track", "mlflow"], capture_output=True, text=True)
    assert res.returncode != 0 and "--track 'mlflow' is not one of csv, tensorboard, wandb" in res.stderr


def test_under_torchrun_only_rank_0_tracks(tmp_path):
    """One student trained by both ranks under DDP: its curve is written once, by rank 0."""
    from distributed import ladd as one_process, torchrun

    art, out = tmp_path / "art", tmp_path / "ev"
    assert one_process("distill", "--dataset", "digits", "--ipc", "1", "--out", art).returncode == 0
    done = torchrun(
        "eval", art, "--model", "convnet-w32", "--methods", "baseline", "--seeds", "1", "--epochs", "2", "--track", "csv", "--out", out
    )
    assert done.returncode == 0, done.stderr
    assert [(r["student"], r["epoch"]) for r in _csv(out / track.CURVES)] == [("baseline/convnet-w32/seed0", e) for e in ("1", "2")]
    assert len(_csv(out / track.ROWS)) == 1
