"""Each kind of LaddError exits with its own code and one `error: ...` line, so a script or a
scheduler can tell a typo (2) from missing data (3), a broken file (4) and a failed run (5)."""

from __future__ import annotations

import os
import subprocess
import sys

from ladd.core.errors import ArtifactError, ConfigError, DataError, Diverged, LaddError, RunError

KINDS = {ConfigError: 2, DataError: 3, ArtifactError: 4, RunError: 5}


def test_every_kind_is_a_ladd_error_with_its_own_exit_code():
    assert LaddError.exit_code == 1
    for kind, code in KINDS.items():
        assert issubclass(kind, LaddError) and kind.exit_code == code
        assert str(kind("two\nlines")) == "two\\nlines"  # still one line
    assert issubclass(Diverged, RunError) and Diverged.exit_code == 5


def test_each_kind_exits_with_its_code_and_one_error_line(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("not json{")
    cases = {
        "unknown image method 'nosuch'": (["distill", "--dataset", "digits", "--images", "nosuch"], 2),
        "does not exist or is not a folder": (["distill", "--dataset", "cifar10", "--data-dir", tmp_path / "nonexistent"], 3),
        "manifest.json is not valid JSON": (["info", broken], 4),
        "CUDA is not available here": (["distill", "--dataset", "digits", "--ipc", "1", "--device", "cuda"], 5),
    }
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    runs = {
        message: (
            subprocess.Popen(
                [sys.executable, "-m", "ladd", *map(str, args), *(["--out", tmp_path / f"out{code}"] if args[0] == "distill" else [])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
            code,
        )
        for message, (args, code) in cases.items()
    }  # in parallel: each start imports torch
    for message, (proc, code) in runs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / f"out{code}").exists()  # nothing half-written


def test_running_out_of_gpu_memory_is_a_run_error_saying_what_to_lower(capsys, monkeypatch):
    """At scale the commonest failure: it was 'unexpected OutOfMemoryError … please report it'."""
    import torch

    from conftest import ladd_main
    from ladd.cli import stages

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")

    monkeypatch.setattr(stages, "new_artifact", oom)
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1")
    assert code == RunError.exit_code and err.count("\n") == 1, err
    assert "out of GPU memory (CUDA out of memory. Tried to allocate 20.00 GiB)" in err and "--micro-batch" in err, err
    assert "please report" not in err


def test_an_indexed_gpu_under_torchrun_is_refused(monkeypatch):
    """`--device cuda:0` put every rank on GPU 0 (an NCCL error, or all ranks sharing one GPU)."""
    import pytest

    from ladd.core.runtime import Runtime

    monkeypatch.setenv("WORLD_SIZE", "2")
    one_gpu = r"--device cuda:0 under torchrun would put every rank on one GPU: give --device cuda \(one per rank\)"
    with pytest.raises(ConfigError, match=one_gpu):
        Runtime.from_name("cuda:0")
