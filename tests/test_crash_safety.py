"""Crash safety of artifacts and relabels: SIGKILL at injected points of a save, fsync on commit,
leftovers swept, an overwrite that keeps the old relabel until the new one is whole, and two
processes on one artifact."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import ladd.core.io as io
from ladd import pipeline
from ladd.artifact import Artifact, load_artifact, save_artifact
from ladd.artifact.relabel import RELABEL_DIR, epoch_file
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.experts import ExpertConfig
from ladd.labels.relabel import PARTIAL, RelabelConfig

TEACHER = ExpertConfig(model="convnet-w32", epochs=1, batch_size=6)
RELABEL = RelabelConfig(epochs=3, batch_size=6, teacher=TEACHER, dtype="float32")


def _artifact(value: int) -> Artifact:
    images = torch.full((3, 1, 4, 4), value, dtype=torch.uint8)
    return Artifact(images, torch.arange(3), MANIFEST)


MANIFEST = {"source": {"dataset": "toy", "class_names": ["a", "b", "c"], "shape": [1, 4, 4]}, "ipc": 1, "images": {"method": "random"}}
# A child process saves artifact B over A and SIGKILLs itself at one named point of the save.
_CHILD = """
import json, os, signal, sys, torch
import ladd.core.io as io
from ladd.artifact import Artifact, save_artifact
point, path = sys.argv[1], sys.argv[2]
if point == "no-exchange":
    io._exchange = lambda a, b: False
real_replace = os.replace
def replace(src, dst):
    if point == "before-switch" or (point == "no-exchange" and str(dst).endswith("/a")):
        real_replace(src, dst) if point == "no-exchange" else None
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
real_write = io.write_json
def write_json(p, obj):
    if point == "mid-write":
        os.kill(os.getpid(), signal.SIGKILL)
    real_write(p, obj)
io.write_json = write_json
import ladd.artifact as art_mod
art_mod.write_json = write_json
if point == "before-switch":
    art_mod.replace_dir = lambda staged, p: os.kill(os.getpid(), signal.SIGKILL)
images = torch.full((3, 1, 4, 4), 2, dtype=torch.uint8)
save_artifact(path, Artifact(images, torch.arange(3), json.loads(sys.argv[3])))
"""


@pytest.mark.parametrize("point", ["mid-write", "before-switch", "no-exchange"])
def test_sigkill_during_a_save_leaves_the_old_artifact_whole(tmp_path, point):
    path = tmp_path / "art"
    save_artifact(path, _artifact(1))
    child = subprocess.run([sys.executable, "-c", _CHILD, point, str(path), json.dumps(MANIFEST)], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".art.") and not p.name.endswith(".lock")]
    assert leftovers  # the killed save left its staging (or the renamed-aside old) directory
    if point == "no-exchange":
        assert not path.exists()  # killed between the two renames: only the fallback has this gap
    assert load_artifact(path).images.eq(1).all()  # a reader puts it back
    save_artifact(path, _artifact(3))  # the next save sweeps what is left
    assert load_artifact(path).images.eq(3).all()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".art.") and not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_switches_in_one_step_and_fsyncs(tmp_path, monkeypatch, exchange):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    target = tmp_path / "entry"
    for value in ("old", "new"):
        staged = io.staging_dir(target)
        io.write_text(staged / "f.txt", value)
        io.replace_dir(staged, target)
        assert (target / "f.txt").read_text() == value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # nothing left beside it
    assert str(tmp_path) in synced  # the parent's entries (the switch) are durable
    assert any(s.startswith(str(tmp_path / ".entry.")) and s.endswith(".tmp") for s in synced)  # files before their rename


def test_sweep_removes_only_the_leftovers_of_its_own_path(tmp_path, capsys):
    target = tmp_path / "run"
    target.mkdir()
    (target / ".x.safetensors.abcd1234.tmp").write_text("half")
    (tmp_path / ".run.abcd1234.tmp").mkdir()
    (tmp_path / ".run.v2.abcd1234.tmp").mkdir()  # another entry's staging: not ours
    io.sweep(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.v2.abcd1234.tmp", "run"]
    assert list(target.iterdir()) == []
    assert "removed 2 leftover(s) of an interrupted write" in capsys.readouterr().err


def test_umask_mode_reads_the_umask_without_setting_it(monkeypatch):
    old = os.umask(0o027)
    try:
        calls = []
        real = os.umask
        monkeypatch.setattr(io.os, "umask", lambda m: (calls.append(m), real(m))[1])
        assert io.umask_mode(0o666) == 0o640 and io.umask_mode(0o777) == 0o750
        assert calls == [] or not Path("/proc/self/status").exists()  # Linux: read, never set
        monkeypatch.setattr(io, "open", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError()), raising=False)
        assert io.umask_mode(0o666) == 0o640 and calls == [0o077, 0o027]  # elsewhere: set and restored
    finally:
        os.umask(old)


def _saved(toy, tmp_path) -> Path:
    path = tmp_path / "art"
    save_artifact(path, pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=6)))
    return path


def test_an_interrupted_overwrite_keeps_the_stored_relabel(toy, tmp_path, monkeypatch):
    import ladd.labels.relabel as mod

    path = _saved(toy, tmp_path)
    first = pipeline.relabel_artifact(path, toy, RELABEL, Runtime())
    real = mod.write_epoch
    monkeypatch.setattr(mod, "write_epoch", lambda d, e, *a: (_ for _ in ()).throw(KeyboardInterrupt) if e == 1 else real(d, e, *a))
    other = RELABEL.model_copy(update={"seed": 7})
    with pytest.raises(KeyboardInterrupt):
        pipeline.relabel_artifact(path, toy, other, Runtime(), overwrite=True)
    kept = load_artifact(path)  # still loads, with the first relabel
    assert kept.relabel.info["config"] == first.relabel.info["config"]
    assert len(json.loads((path / PARTIAL / "relabel.json").read_text())["files"]) == 1
    monkeypatch.setattr(mod, "write_epoch", real)
    done = pipeline.relabel_artifact(path, toy, other, Runtime(), overwrite=True)
    assert done.relabel.info["config"]["seed"] == 7 and not (path / PARTIAL).exists()
    fresh = _saved(toy, tmp_path / "fresh")
    assert pipeline.relabel_artifact(fresh, toy, other, Runtime()).relabel.info["files"] == done.relabel.info["files"]


def test_resuming_a_relabel_refuses_epochs_of_another_teacher(toy, tmp_path, monkeypatch):
    import ladd.labels.relabel as mod

    path = _saved(toy, tmp_path)
    real = mod.write_epoch
    monkeypatch.setattr(mod, "write_epoch", lambda d, e, *a: (_ for _ in ()).throw(KeyboardInterrupt) if e == 1 else real(d, e, *a))
    with pytest.raises(KeyboardInterrupt):
        pipeline.relabel_artifact(path, toy, RELABEL, Runtime())
    monkeypatch.setattr(mod, "write_epoch", real)
    info_path = path / PARTIAL / "relabel.json"
    info = json.loads(info_path.read_text())
    info["teacher"]["checkpoint_sha256"] = "0" * 64  # as if a retrained teacher had labelled epoch 0
    info_path.write_text(json.dumps(info))
    with pytest.raises(LaddError, match="labelled by another teacher .*pass --overwrite to start it again"):
        pipeline.relabel_artifact(path, toy, RELABEL, Runtime())
    art = pipeline.relabel_artifact(path, toy, RELABEL, Runtime(), overwrite=True)
    assert art.relabel.epochs == 3 and art.relabel.info["teacher"]["checkpoint_sha256"] != "0" * 64


def test_two_relabels_of_one_artifact_at_once_make_it_once(toy, tmp_path, capsys):
    path = _saved(toy, tmp_path)
    results, errors = [], []

    def run():
        try:
            results.append(pipeline.relabel_artifact(path, toy, RELABEL, Runtime()))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 2
    assert results[0].relabel.info["files"] == results[1].relabel.info["files"]
    assert (path / RELABEL_DIR / epoch_file(2)).is_file() and not (path / PARTIAL).exists()
    assert capsys.readouterr().err.count("waiting for another ladd process relabelling") == 1
