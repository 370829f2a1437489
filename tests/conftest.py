"""Shared tiny fixtures: everything here builds in well under a second."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import sys
from pathlib import Path

import pytest
import torch

from ladd.core.types import Dataset, ImageSet


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark(name: str):
    """benchmarks/<name>.py imported as a module (the scripts are not a package); registered in
    sys.modules first, as dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(f"ladd_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_dataset(n_per_class: int = 6, classes: int = 3, size: int = 8, channels: int = 1, seed: int = 0) -> Dataset:
    """A random uint8 dataset whose classes differ in mean brightness (so they are learnable)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    base = (labels.float() + 1) / (classes + 1) * 255
    noise = torch.randn(len(labels), channels, size, size, generator=g) * 30
    images = (base.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    split = ImageSet(images, labels)
    return Dataset("toy", split, split, tuple(f"c{i}" for i in range(classes)), (0.5,) * channels, (0.25,) * channels)


@pytest.fixture
def toy() -> Dataset:
    return make_dataset()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Labelers trained by tests go to a per-test cache, never to ~/.cache."""
    monkeypatch.setenv("LADD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LADD_NO_PROGRESS", "1")


@pytest.fixture
def interrupted(monkeypatch):
    """`with interrupted(n): run()` kills the learned-image loop right after its n-th checkpoint
    (a KeyboardInterrupt, as from Ctrl-C) and expects it to stop there."""
    import ladd.images.optimize as opt_mod

    @contextlib.contextmanager
    def after_checkpoint(n: int):
        real_save = opt_mod.save_state
        counter = itertools.count(1)

        def save_then_stop(*args, **kw):
            real_save(*args, **kw)
            if next(counter) == n:
                raise KeyboardInterrupt

        monkeypatch.setattr(opt_mod, "save_state", save_then_stop)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(opt_mod, "save_state", real_save)

    return after_checkpoint


def ladd_main(capsys, *args) -> tuple[int, str]:
    """`ladd ARGS` in this process (as `python -m ladd` runs it): (exit code, stderr)."""
    from ladd import cli

    argv, sys.argv = sys.argv, ["ladd", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err
