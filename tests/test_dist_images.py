"""torchrun on the image stages, through the CLI on digits: squeeze's class-wise BN statistics equal
one process's within float32 rounding; SRe²L/LPLD recover, LIC and RDED give one process's images
byte for byte, each rank doing only its units (classes). The one-process runs run in this process
(one thread, as the ranks run), saving an interpreter start each."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ladd_main
from distributed import torchrun
from ladd.images.optimize import STATE
from ladd.images.squeeze import STATS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DIGITS = ("--dataset", "digits", "--device", "cpu")
STATS_TOL = 1e-6  # relative: a float64 sum in another order, rounded to float32 (at most 1 ulp ≈ 6e-8)


def ok(res) -> str:
    """stderr of a successful torchrun launch."""
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


@pytest.fixture
def one(capsys, monkeypatch):
    """`one(*args, cache=...)`: `ladd ARGS` as one process, here, on one thread; its stderr."""

    def run(*args, cache: Path | None = None) -> str:
        if cache is not None:
            monkeypatch.setenv("LADD_CACHE", str(cache))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            code, err = ladd_main(capsys, *args)
        finally:
            torch.set_num_threads(threads)
        assert code == 0, err[-3000:]
        return err

    return run


def same_artifact(a: Path, b: Path) -> None:
    """Images (and region labels, if any) of two artifacts are the same bytes."""
    names = sorted(p.name for p in a.glob("*.safetensors"))
    assert names == sorted(p.name for p in b.glob("*.safetensors")) and "images.safetensors" in names
    for name in names:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def units_by_rank(stderr: str, what: str) -> tuple[set[int], set[int]]:
    """Units whose checkpoints rank 0 and rank 1 logged (rank 1's lines carry its rank); only lines
    that are one message whole, as the two ranks' lines can cut into each other on the shared stderr."""
    lines = re.findall(rf"^(rank 1 of 2: )?{what} (\d+): checkpoint: iteration \d+/\d+ -> \S+$", stderr, re.M)
    return {int(u) for r, u in lines if not r}, {int(u) for r, u in lines if r}


def test_squeeze_and_lpld_recover_equal_one_process(tmp_path, one):
    teacher, again = tmp_path / "teacher", tmp_path / "again"
    one("squeeze", *DIGITS, "--teacher-model", "convnet-bn", "--teacher-epochs", "1", "--teacher-dir", teacher)
    shutil.copytree(teacher, again)
    (again / STATS).unlink()  # the same teacher without statistics: the 2 ranks squeeze it (as `ladd squeeze` did), then recover
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        'method = "lpld"\n[params]\nteacher_model = "convnet-bn"\nteacher_epochs = 1\n'
        "iterations = 2\njitter = 1\nflip = false\ncrop_scale = 1.0\ncheckpoint_every = 1\n"
    )
    recover = ("recover", "--images", "lpld", *DIGITS, "--ipc", "2", "--recipe", recipe, "--teacher-dir", again)
    log = ok(torchrun(*recover, "--out", tmp_path / "two", env={"LADD_CACHE": str(tmp_path / "c2")}))
    a, b = load_file(teacher / STATS), load_file(again / STATS)
    assert a.keys() == b.keys() and torch.equal(a["count"], b["count"])
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=STATS_TOL, atol=1e-7)

    one(*recover, "--out", tmp_path / "one", cache=tmp_path / "c1")  # from the 2 ranks' statistics, as they recovered
    same_artifact(tmp_path / "one", tmp_path / "two")
    units = sorted((tmp_path / "c2").rglob(f"unit_*/{STATE}"))
    assert len(units) == 10  # every class checkpointed, by the rank that recovered it
    assert units_by_rank(log, "LPLD class") == ({0, 2, 4, 6, 8}, {1, 3, 5, 7, 9})  # each rank did only its classes
    # one process resumes every unit the two ranks checkpointed: nothing left to do, the same images
    resumed = one(*recover, "--resume", "--out", tmp_path / "resumed", cache=tmp_path / "c2")
    assert resumed.count("(iteration 2/2)") == 10
    same_artifact(tmp_path / "one", tmp_path / "resumed")


def test_lic_and_rded_equal_one_process(tmp_path, one):
    observer = ("--param", "observer_model=convnet", "--param", "observer_epochs=1", "--param", "candidates=20")
    lic = ("distill", "--images", "lic", *DIGITS, "--ipc", "1", *observer, "--param", "iterations=2", "--param", "checkpoint_every=1")
    one(*lic, "--out", tmp_path / "lic1")  # trains the observer both runs use (the cache is shared)
    shutil.rmtree(tmp_path / "cache" / "distill")  # the compensation checkpoints: the ranks make their own
    log = ok(torchrun(*lic, "--out", tmp_path / "lic2"))
    same_artifact(tmp_path / "lic1", tmp_path / "lic2")
    assert len(list((tmp_path / "cache" / "distill").rglob(f"class_*/{STATE}"))) == 10
    assert units_by_rank(log, "LIC compensation class") == ({0, 2, 4, 6, 8}, {1, 3, 5, 7, 9})

    rded = ("distill", "--images", "rded", *DIGITS, "--ipc", "2", *observer)
    one(*rded, "--out", tmp_path / "rded1")
    ok(torchrun(*rded, "--out", tmp_path / "rded2"))
    same_artifact(tmp_path / "rded1", tmp_path / "rded2")
