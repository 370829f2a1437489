"""The dataset store (ladd.data.store) and the readers of stored splits (ladd.data.stream)."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distributed import spawn
from ladd.core import cache
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.core.types import ImageSet, channel_stats
from ladd.data import holdout, imagefolder, load_dataset, store, stream
from ladd.experts import build_for
from ladd.train.loop import Recipe, TrainData, accuracy, predict, train
from ladd.train.terms import method_terms

CLASSES = ("ant", "bee", "cat")
RES = 12


def write_folder(root: Path, train: int = 4, val: int = 2, seed: int = 0) -> Path:
    """JPEGs and PNGs of varied sizes and aspect ratios, classes of different brightness."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for k, name in enumerate(CLASSES):
            for i in range(count):
                h, w = (int(v) for v in rng.integers(9, 40, 2))
                pixels = (rng.random((h, w, 3)) * 80 + 60 * k).astype(np.uint8)
                path = root / split / name / f"{i}.{'png' if i % 2 else 'jpg'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    return root


def direct(root: Path, split: str = "train") -> ImageSet:
    """The split decoded in memory, one file after another (no store)."""
    items = imagefolder._folder_items(root / split, list(CLASSES))
    images = torch.stack([torch.from_numpy(imagefolder.decode(path, RES).copy()) for path, _ in items])
    return ImageSet(images, torch.tensor([label for _, label in items]))


def store_dirs() -> list[Path]:
    folder = cache.cache_root() / "data"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def forget_open_stores(monkeypatch):
    """Make the next load open the store from disk, as a new process would."""
    monkeypatch.setattr(store, "_OPENED", {})


def fail(*args, **kw):
    raise AssertionError("decoded again: the store should have been reused")


def test_built_once_then_memory_mapped_and_reused(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data")
    ds = load_dataset("imagefolder", data_dir=root, resolution=RES)
    [path] = [p for p in store_dirs() if not p.name.endswith(".lock")]
    assert path.name.startswith(f"imagefolder-{RES}px-f{cache.FORMATS['data']}-")
    assert sorted(p.name for p in path.iterdir()) == [
        "store.json",
        "test.images.npy",
        "test.labels.npy",
        "train.images.npy",
        "train.labels.npy",
    ]
    assert store.store_of(ds) == path and stream.stored(ds.train.images) and stream.stored(ds.test.images)
    # reads equal a direct decode, the mean/std the in-memory computation
    ref_train, ref_test = direct(root), direct(root, "val")
    assert torch.equal(ds.train.images, ref_train.images) and torch.equal(ds.train.labels, ref_train.labels)
    assert torch.equal(ds.test.images, ref_test.images) and torch.equal(ds.test.labels, ref_test.labels)
    assert (ds.mean, ds.std) == channel_stats(ref_train.images)
    x = ref_train.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(ds.std, x.std(axis=(0, 2, 3)), atol=1e-6)

    forget_open_stores(monkeypatch)
    monkeypatch.setattr(store, "_decode_task", fail)
    monkeypatch.setattr(imagefolder, "decode", fail)
    t0 = time.perf_counter()
    again = load_dataset("imagefolder", data_dir=root, resolution=RES)
    assert time.perf_counter() - t0 < 2.0
    assert again is not ds and torch.equal(again.train.images, ds.train.images) and (again.mean, again.std) == (ds.mean, ds.std)
    assert again.train.images.is_contiguous() and again.train.images.dtype == torch.uint8
    assert cache.verify(cache.entries(["data"])[0]) is None


def test_a_changed_file_builds_a_new_store(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data")
    first = load_dataset("imagefolder", data_dir=root, resolution=RES)
    target = root / "train" / "bee" / "0.jpg"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # only the mtime changes
    forget_open_stores(monkeypatch)
    calls = []
    real = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda path, size: calls.append(path) or real(path, size))
    second = load_dataset("imagefolder", data_dir=root, resolution=RES)
    assert calls and store.store_of(second) != store.store_of(first)
    Image.new("RGB", (30, 20), (255, 255, 255)).save(target)  # new content (and size)
    third = load_dataset("imagefolder", data_dir=root, resolution=RES)
    assert len({store.store_of(d) for d in (first, second, third)}) == 3
    assert (third.train.images[4] == 255).all() and not (second.train.images[4] == 255).all()
    assert load_dataset("imagefolder", data_dir=root, resolution=RES + 1).shape == (3, RES + 1, RES + 1)  # resolution is keyed


KILLED = """
import sys, time
from pathlib import Path
from ladd.data import imagefolder, load_dataset
real, seen = imagefolder.decode, []
def slow(path, size):
    seen.append(path)
    if len(seen) == 3:
        Path(sys.argv[2]).write_text("decoding")
        time.sleep(60)
    return real(path, size)
imagefolder.decode = slow
load_dataset("imagefolder", data_dir=sys.argv[1], resolution=%d, workers=1)
"""


def test_a_killed_build_leaves_nothing_half_used(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data")
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED % RES), str(root), str(marker)], env={**os.environ, "LADD_NO_PROGRESS": "1"}
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the build never reached the injected point"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
    left = store_dirs()
    assert [p for p in left if not p.name.startswith(".")] == []  # no store appeared
    assert any(p.name.endswith(".tmp") for p in left)  # only its staging folder
    assert [e.status for e in cache.entries(["data"])] == ["leftover"]
    ds = load_dataset("imagefolder", data_dir=root, resolution=RES)  # the next load sweeps and builds
    assert torch.equal(ds.train.images, direct(root).images)
    assert [p.name for p in store_dirs() if p.name.endswith(".tmp")] == []
    assert [e.status for e in cache.entries(["data"])] == ["complete"]


def test_parallel_build_equals_serial_and_a_bad_file_stops_it_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store, "MIN_PER_WORKER", 1)  # two spawned workers even for a handful of images
    monkeypatch.setattr(store, "PER_TASK", 3)
    root = write_folder(tmp_path / "data", train=5)
    bad = root / "train" / "bee" / "3.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(LaddError, match=r"cannot read image .*3\.png .*--skip-unreadable") as e:
        load_dataset("imagefolder", data_dir=root, resolution=RES, workers=2)
    assert "\n" not in str(e.value)
    assert store_dirs() == [] or all(p.name.endswith(".lock") for p in store_dirs())  # nothing built, nothing left
    capsys.readouterr()
    skipped = load_dataset("imagefolder", data_dir=root, resolution=RES, skip_unreadable=True, workers=1)
    assert f"warning: skipping unreadable image {bad} (--skip-unreadable)\n" in capsys.readouterr().err  # one line, no Python warning
    assert len(skipped.train) == 14 and skipped.train.labels.tolist() == [0] * 5 + [1] * 4 + [2] * 5
    assert store.describe(store.store_of(skipped))["skipped"] == 1
    Image.new("RGB", (16, 16), (10, 200, 30)).save(bad, format="PNG")
    ds = load_dataset("imagefolder", data_dir=root, resolution=RES, workers=2)
    info = store.describe(store.store_of(ds))
    assert info["workers"] == 2 and info["train"] == 15 and info["test"] == 6
    ref = direct(root)
    assert torch.equal(ds.train.images, ref.images) and torch.equal(ds.train.labels, ref.labels)
    assert (ds.mean, ds.std) == channel_stats(ref.images)
    assert torch.equal(skipped.train.images[:8], ref.images[:8]) and torch.equal(
        skipped.train.images[8:], ref.images[9:]
    )  # bee/3.png was 8


UNGUARDED = """
import sys
from ladd.data import load_dataset, store
store.MIN_PER_WORKER = 1
load_dataset("imagefolder", data_dir=sys.argv[1], resolution=%d, workers=2)
"""


def test_a_script_without_a_main_guard_gets_an_error_not_a_deadlock(tmp_path):
    """Spawned decode workers re-import the main script; one that loads a dataset at its top level
    would wait forever for the store its parent is building."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED % RES)
    run = subprocess.run(
        [sys.executable, str(script), str(write_folder(tmp_path / "data"))],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LADD_NO_PROGRESS": "1"},
    )
    assert run.returncode != 0
    assert "decode worker process died" in run.stderr and 'if __name__ == "__main__":' in run.stderr


def test_stream_readers_equal_indexing(tmp_path):
    ds = load_dataset("imagefolder", data_dir=write_folder(tmp_path / "data", train=6), resolution=RES)
    images, ram = ds.train.images, ds.train.images.clone()
    assert stream.stored(images) and not stream.stored(ram)
    g = torch.Generator().manual_seed(0)
    for idx in (
        torch.randint(len(ram), (7,), generator=g),
        torch.tensor([3, 3, 4, 5, 0]),
        torch.arange(4, 9),
        torch.randint(len(ram), (2, 3), generator=g),
        ram[:, 0, 0, 0] > 100,
        torch.tensor([-1, 0]),
    ):
        assert torch.equal(stream.gather(images, idx), ram[idx])
    assert all(torch.equal(a, b) for a, b in zip(stream.chunks(images, 5), ram.split(5), strict=True))
    order = torch.randperm(len(ram), generator=g).split(4)
    assert all(torch.equal(a, ram[i]) for a, i in zip(stream.batches(images, order, torch.device("cpu")), order, strict=True))
    view = stream.rows(images, torch.tensor([1, 4, 7, 8]))
    assert isinstance(view, stream.IndexView) and view.shape == (4, *ram.shape[1:]) and len(view) == 4
    assert torch.equal(view[torch.tensor([2, 0])], ram[[7, 1]]) and torch.equal(view[1], ram[4])
    assert torch.equal(torch.cat(list(view.split(3))), ram[[1, 4, 7, 8]]) and torch.equal(view.float(), ram[[1, 4, 7, 8]].float())
    assert torch.equal(stream.rows(view, torch.tensor([3])).materialize(), ram[[8]])
    assert torch.equal(
        predict(build_for(ds, "convnet", 0), images, ds.mean, ds.std, batch_size=5),
        predict(build_for(ds, "convnet", 0), ram, ds.mean, ds.std, batch_size=5),
    )


def test_a_stored_split_trains_a_student_exactly_like_the_in_memory_one(tmp_path):
    ds = load_dataset("imagefolder", data_dir=write_folder(tmp_path / "data", train=6), resolution=RES)
    ram = replace(ds, train=ImageSet(ds.train.images.clone(), ds.train.labels.clone()))
    recipe = Recipe(epochs=2, batch_size=5, dsa="color_crop_cutout_flip_scale_rotate")
    runtime = Runtime()

    def student(d):
        model = build_for(d, "convnet", 0)
        log = train(
            model, TrainData(d.train.images, d.train.labels, d.mean, d.std), method_terms("baseline"), recipe, seed=1, runtime=runtime
        )
        return model, log

    for a, b in ((ds, ram), (holdout(ds, 1), holdout(ram, 1))):
        (m1, log1), (m2, log2) = student(a), student(b)
        assert log1.epoch_loss == log2.epoch_loss
        assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
        assert accuracy(m1, a.test.images, a.test.labels, a.mean, a.std) == accuracy(m2, b.test.images, b.test.labels, b.mean, b.std)
    view = holdout(ds, 1)
    assert isinstance(view.train.images, stream.IndexView) and not isinstance(holdout(ram, 1).train.images, stream.IndexView)
    assert torch.equal(view.train.images.materialize(), holdout(ram, 1).train.images)


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    def head(magic, dims):
        return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)

    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(head(2051, images.shape) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(head(2049, labels.shape) + labels.tobytes())


def test_parsed_sources_are_stored_too(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path, prefix, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
    ds = load_dataset("mnist-idx", data_dir=tmp_path)
    assert stream.stored(ds.train.images) and ds.train.images.shape == (30, 1, 28, 28)
    forget_open_stores(monkeypatch)
    from ladd.data import idx

    real = idx.read_idx
    monkeypatch.setattr(idx, "read_idx", fail)
    again = load_dataset("mnist-idx", data_dir=tmp_path)
    assert torch.equal(again.train.images, ds.train.images) and (again.mean, again.std) == (ds.mean, ds.std)
    monkeypatch.setattr(idx, "read_idx", real)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")  # a changed file: parsed again, and refused
    with pytest.raises(LaddError, match="t10k-labels"):
        load_dataset("mnist-idx", data_dir=tmp_path)


def test_a_damaged_store_is_found_by_verify_and_rebuilt(tmp_path, monkeypatch, capsys):
    root = write_folder(tmp_path / "data")
    ds = load_dataset("imagefolder", data_dir=root, resolution=RES)
    path = store.store_of(ds)
    images = path / "train.images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    assert "does not match the SHA-256" in cache.verify(cache.entries(["data"])[0])
    with open(images, "r+b") as f:
        f.truncate(len(data) - 100)
    forget_open_stores(monkeypatch)
    again = load_dataset("imagefolder", data_dir=root, resolution=RES)
    assert "damaged" in capsys.readouterr().err
    assert torch.equal(again.train.images, direct(root).images) and cache.verify(cache.entries(["data"])[0]) is None


def test_cli_data_prepare_and_info(tmp_path):
    from typer.testing import CliRunner

    from ladd.cli import app

    root = write_folder(tmp_path / "data")
    args = ["data", "prepare", "--dataset", "imagefolder", "--data-dir", str(root), "--resolution", str(RES), "--workers", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "store built" in res.output and "train 12, test 6" in res.output and "3 classes" in res.output
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "store reused" in res.output
    res = CliRunner().invoke(app, ["data", "info", "--json", str(tmp_path / "info.json")])
    assert res.exit_code == 0 and "1 dataset stores" in res.output
    import json

    [row] = json.loads((tmp_path / "info.json").read_text())["stores"]
    assert row["dataset"] == "imagefolder" and row["train"] == 12 and row["shape"] == [3, RES, RES] and row["status"] == "complete"
    res = CliRunner().invoke(app, ["data", "prepare", "--dataset", "digits"])
    assert res.exit_code == 0 and "no store" in res.output
    res = CliRunner().invoke(app, ["cache", "ls", "--kind", "data"])
    assert res.exit_code == 0 and "imagefolder" in res.output


def test_workers_setting(monkeypatch):
    monkeypatch.setenv(store.WORKERS_ENV, "3")
    assert store.default_workers() == 3
    monkeypatch.setenv(store.WORKERS_ENV, "zero")
    with pytest.raises(LaddError, match="LADD_WORKERS"):
        store.default_workers()
    monkeypatch.delenv(store.WORKERS_ENV)
    assert store.default_workers() >= 1
    with pytest.raises(LaddError, match="--workers"):
        load_dataset("digits", workers=0)


def test_the_images_own_size_keys_the_same_store_as_that_resolution_given(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for k, name in enumerate(CLASSES):
            path = root / split / name / "0.png"
            path.parent.mkdir(parents=True)
            Image.new("RGB", (RES, RES), (80 * k, 40, 40)).save(path)
    auto = load_dataset("imagefolder", data_dir=root)
    assert auto.shape == (3, RES, RES)
    forget_open_stores(monkeypatch)
    monkeypatch.setattr(store, "_decode_task", fail)
    monkeypatch.setattr(imagefolder, "decode", fail)
    assert store.store_of(load_dataset("imagefolder", data_dir=root, resolution=RES)) == store.store_of(auto)


def _listed_load(root: str) -> dict:
    """An image folder loaded on this rank: how many class folders it listed, and what it got."""
    from ladd.core import dist

    listed = []
    real = imagefolder._folder_items
    imagefolder._folder_items = lambda *a: (listed.append(a[0].name), real(*a))[1]
    ds = load_dataset("imagefolder", data_dir=root, resolution=RES)
    return {"listed": listed, "images": ds.train.images.clone(), "test": ds.test.labels.clone(), "rank": dist.rank()}


def test_under_torchrun_rank_zero_lists_the_folder_and_the_others_open_the_store_it_names(tmp_path):
    """The store's key holds every file's size and mtime; under torchrun rank 0 lists and stats
    them and names the store, so a million-file folder is not listed by every rank. Before the
    store exists, the rank that builds it lists the files (whichever takes the lock first)."""
    root = write_folder(tmp_path / "data")
    first = spawn(_listed_load, str(root))
    assert first[0]["listed"] == ["train", "val"]
    again = spawn(_listed_load, str(root))  # the store exists now
    assert [r["listed"] for r in again] == [["train", "val"], []]
    for r in first + again:
        assert torch.equal(r["images"], direct(root).images) and torch.equal(r["test"], direct(root, "val").labels)
