"""The dataset store: an on-disk source decoded once, memory-mapped ever after.

The first load of an on-disk source (imagefolder and Tiny-ImageNet, imagenet and its subsets,
cifar10/100, mnist-idx) writes its splits under `$LADD_CACHE/data/<name>-f<FORMAT>-<hash>/`:

    train.images.npy  N×C×H×W uint8   train.labels.npy  N int64
    test.images.npy                   test.labels.npy
    store.json        dataset, class names, shape, per-split counts (and per class), the train
                      split's mean/std, each file's bytes and SHA-256, what was skipped, decode
                      seconds and workers
    default_size.json imagefolder without --resolution: the size its rule chose for these files
                      and why, written after the store, so later loads read no image header

Image folders are decoded by `workers` processes (`--workers` of `ladd data prepare`, else
$LADD_WORKERS, else every CPU this process may use), each writing its images straight into the
file (pwrite) and counting a pixel histogram of them; the mean/std come from those exact integer
counts, so they equal `channel_stats` on the same pixels (`ladd.core.types.histogram_stats`) and
nothing ever holds the whole split. CIFAR and IDX files are parsed in memory by their source as
before (they are small) and written once.

A store is keyed by what determines its bytes: the source, its resolution and crop rule,
`--skip-unreadable`, the class list and every file it reads (path, size, mtime), so touching or
replacing a file builds a new store (the old one is left for `ladd cache prune`). It is built in a
hidden staging folder under the entry's lock and switched into place in one step (`replace_dir`),
`store.json` written last: a second process waits and reuses it, a killed build leaves only a
staging folder that the next build sweeps (and `ladd cache ls` shows as a leftover).

Every later load maps the arrays (`np.load(mmap_mode="c")`: copy-on-write, so the tensors are
writable, torch does not warn, and a stray in-place write never reaches the file) in milliseconds;
`ladd.data.stream` reads them batch by batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import threading
import time
import weakref
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import ladd
from ladd.core import dist, progress
from ladd.core.cache import FORMATS, entries, entry
from ladd.core.errors import ConfigError, DataError, LaddError, RunError
from ladd.core.logs import logger
from ladd.core.io import (
    fsync,
    lock,
    read_json,
    replace_dir,
    sha256,
    staging_dir,
    sweep,
    write_json,
)
from ladd.core.types import Dataset, ImageSet, histogram_stats, pixel_histogram
from ladd.data import stream

KIND = "data"
META = "store.json"
SPLITS = ("train", "test")
CROP = "centre-square, PIL draft, bicubic"  # imagefolder._square: in the key, so another rule never reuses a store
PER_TASK = 256  # images one decode task reads and writes (one pwrite)
MIN_PER_WORKER = 512  # fewer images than this per worker: decode in this process (a spawned worker costs ~1.5 s to start)
WORKERS_ENV = "LADD_WORKERS"

BUILT: list[str] = []  # stores built by this process, in order (`ladd data prepare` says built or reused)
_OPENED: dict[str, tuple[tuple[int, int], weakref.ref]] = {}  # path → (store.json identity, its Dataset while in use): mapped once


def default_workers() -> int:
    """$LADD_WORKERS, else the number of CPUs this process may run on."""
    text = os.environ.get(WORKERS_ENV)
    if text:
        try:
            workers = int(text)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ConfigError(f"{WORKERS_ENV}={text!r} is not a whole number >= 1: fix or unset it")
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --- what sources call -----------------------------------------------------------------------------


def folder_dataset(
    dataset: str,
    root: Path,
    items: Callable[[], tuple[list, list]],
    classes,
    size: int | None,
    options,
    default: Callable[[list[Path]], tuple[int, str]] | None = None,
    default_sizes: range = range(0),
) -> Dataset:
    """The dataset of decoded image files, from its store, built first if there is none. `items()`
    lists them, `(path, label)` per split (train, test), checked by the source; the store's key
    holds every listed file's size and mtime. Under torchrun rank 0 lists and stats them and names
    the store to every rank (a folder of a million files is listed once, not once per rank); a
    rank lists them itself only when it is the one to build the store. `size` None: the source's
    `default(paths)` → (size, why) picks it among `default_sizes` (it may read every file's header)
    once per listing of the files: the answer is noted in the store it chose (`DEFAULT_NOTE`) and
    read back from there while the files are unchanged. The choice and its reason are logged on
    every load."""
    listed: dict[str, list] = {}

    def splits() -> dict[str, list]:
        if not listed:
            listed.update(zip(SPLITS, items()))
            for split, found in listed.items():  # before any decoding: an empty split's mean/std would be NaN
                if not found:
                    raise DataError(f"the {split} split of {dataset} has no images: put image files in its folder under --data-dir")
        return listed

    def where(side: int, listing: str) -> Path:
        key = {
            "source": dataset,
            "root": str(Path(root).resolve()),
            "resolution": side,
            "crop": CROP,
            "skip_unreadable": bool(options.skip_unreadable),
            "classes": list(classes),
            "files": listing,
        }
        return entry(KIND, f"{dataset}-{side}px", key)

    def locate() -> tuple[str, int, str | None]:
        """(store path, size, the default rule's reason when it worked its answer out on this load)."""
        listing = _listing(root, splits())
        if size is not None:
            return str(where(size, listing)), size, None
        noted = _noted_default(lambda side: where(side, listing), default_sizes)
        side, why = default([path for found in splits().values() for path, _ in found]) if noted is None else noted
        progress.log(f"{dataset}: {why}: using {side} px (give --resolution to change)")
        return str(where(side, listing)), side, why if noted is None else None

    path, side, decided = dist.first(locate)

    def build(staged: Path, workers: int) -> dict:
        return {**_decode(staged, splits(), list(classes), side, options.skip_unreadable, workers), "class_names": list(classes)}

    opened = _get(Path(path), dataset, build, options.workers)
    if decided is not None and dist.main():  # noted once the store exists
        with contextlib.suppress(OSError):  # a read-only cache: decided again next time
            write_json(Path(path) / DEFAULT_NOTE, {"size": side, "why": decided})
    return opened


DEFAULT_NOTE = "default_size.json"  # in a store: the default-size rule's (size, why) for its files, so later loads open no image


def _noted_default(where: Callable[[int], Path], sides: range) -> tuple[int, str] | None:
    """The (size, why) noted by the default-size rule in the store of one of `sides` for these files
    (a store's key holds their listing), or None."""
    for side in sides:
        try:
            note = json.loads((where(side) / DEFAULT_NOTE).read_text())
            if note["size"] == side:
                return side, str(note["why"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def file_dataset(dataset: str, files: list[Path], options, parse: Callable[[], Dataset]) -> Dataset:
    """A source that parses a few files in memory (CIFAR, IDX): `parse()` the first time, stored
    for every later load. A missing file is keyed too, so `parse` reports it as before."""
    key = {"source": dataset, "files": _files(files)}

    def build(staged: Path, workers: int) -> dict:
        t0 = time.perf_counter()
        parsed = parse()
        info = {"class_names": list(parsed.class_names), "mean": list(parsed.mean), "std": list(parsed.std), "workers": 1, "skipped": []}
        for split in SPLITS:
            part = getattr(parsed, split)
            _write_npy(staged / f"{split}.images.npy", part.images.numpy())
            _write_npy(staged / f"{split}.labels.npy", part.labels.numpy().astype(np.int64))
        return {**info, "decode_seconds": round(time.perf_counter() - t0, 3)}

    return _get(entry(KIND, dataset, key), dataset, build, options.workers)


# --- keys ----------------------------------------------------------------------------------------


def _stat(path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:  # a listed file that is gone or unreachable: its decode reports it
        return None
    return [st.st_size, st.st_mtime_ns]


def _listing(root: Path, splits: dict) -> str:
    """SHA-256 of every item (path under `root`, label, size, mtime) of every split, in order."""
    h = hashlib.sha256()
    prefix = os.fsencode(root)
    for split, items in splits.items():
        h.update(f"[{split}]\n".encode())
        for path, label in items:
            name = os.fsencode(path)
            name = name[len(prefix) :] if name.startswith(prefix) else name
            h.update(name + b"\0" + f"{label} {_stat(path)}\n".encode())
    return h.hexdigest()


def _files(files: list[Path]) -> list:
    return [[os.fsdecode(Path(p).resolve()), _stat(p)] for p in files]


# --- open or build ---------------------------------------------------------------------------------


class _Damaged(Exception):
    pass


MAIN_GUARD = (
    "decode workers are spawned processes that re-import the script that started them: "
    'put the script\'s code under `if __name__ == "__main__":`'
)


def _get(path: Path, dataset: str, build, workers: int | None) -> Dataset:
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # a spawned worker importing an unguarded script
        raise RunError(f"a dataset was loaded while a worker process was starting: {MAIN_GUARD}")
    try:
        return open_store(path)
    except FileNotFoundError:
        pass
    except _Damaged as e:
        progress.log(f"the dataset store {path} is damaged ({e}): building it again")
    workers = default_workers() if workers is None else workers
    with lock(path, "building the dataset store"):
        sweep(path)
        try:  # another process may have built it meanwhile (we waited for it, or it finished just before)
            return open_store(path)
        except (FileNotFoundError, _Damaged):
            pass
        staged = staging_dir(path)
        try:
            info = build(staged, workers)
            _finish(staged, dataset, info)
            replace_dir(staged, path)
        except BaseException as e:
            shutil.rmtree(staged, ignore_errors=True)
            if isinstance(e, OSError):  # the cache's disk (full, read-only, ...); unreadable images are LaddErrors
                raise RunError(
                    f"cannot write the dataset store {path} ({e.strerror or e}): free space there, or point LADD_CACHE at a disk with room"
                ) from e
            raise
    BUILT.append(str(path))
    return open_store(path)  # a new store.json (new inode): `open_store`'s cache cannot hold the old one


def _finish(staged: Path, dataset: str, info: dict) -> None:
    """Labels checked, per-class counts, files hashed and fsynced, then store.json: the last file written."""
    splits, files = {}, {}
    shape = None
    for split in SPLITS:
        images = np.load(staged / f"{split}.images.npy", mmap_mode="r")
        labels = np.load(staged / f"{split}.labels.npy")
        shape = list(images.shape[1:])
        splits[split] = {
            "count": int(len(labels)),
            "per_class": np.bincount(labels, minlength=len(info["class_names"])).tolist(),
            "images": f"{split}.images.npy",
            "labels": f"{split}.labels.npy",
        }
        del images
    for p in sorted(staged.glob("*.npy")):
        fsync(p)
        files[p.name] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
    write_json(
        staged / META,
        {
            "kind": "ladd-data-store",
            "format": FORMATS[KIND],
            "dataset": dataset,
            "class_names": info["class_names"],
            "shape": shape,
            "mean": info["mean"],
            "std": info["std"],
            "splits": splits,
            "files": files,
            "skipped": info["skipped"],
            "decode_seconds": info["decode_seconds"],
            "workers": info["workers"],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ladd": ladd.__version__,
        },
    )


def open_store(path: Path) -> Dataset:
    """The Dataset of a built store, its images memory-mapped (mapped once per process).
    FileNotFoundError when there is none; _Damaged when it does not read back as store.json says."""
    path = Path(path)
    meta = path / META
    st = os.stat(meta)  # FileNotFoundError: no store (a store's folder only ever appears whole)
    ident = (st.st_ino, st.st_mtime_ns)
    cached = _OPENED.get(str(path))
    if cached is not None and cached[0] == ident and cached[1]() is not None:
        return cached[1]()
    try:
        info = read_json(meta, "the store is rebuilt")
        shape = tuple(info["shape"])
        classes = tuple(info["class_names"])
        parts = {}
        for split in SPLITS:
            part = info["splits"][split]
            images = np.load(path / part["images"], mmap_mode="c", allow_pickle=False)
            labels = np.load(path / part["labels"], allow_pickle=False)
            if images.dtype != np.uint8 or images.shape != (part["count"], *shape):
                raise _Damaged(f"{part['images']} holds {images.dtype} {images.shape}, store.json says uint8 {(part['count'], *shape)}")
            if (
                labels.dtype != np.int64
                or labels.shape != (part["count"],)
                or (len(labels) and not 0 <= labels.min() <= labels.max() < len(classes))
            ):
                raise _Damaged(f"{part['labels']} does not hold {part['count']} labels of {len(classes)} classes")
            parts[split] = ImageSet(stream.register(images, path / part["images"]), torch.from_numpy(labels))
        dataset = Dataset(info["dataset"], parts["train"], parts["test"], classes, tuple(info["mean"]), tuple(info["std"]))
    except FileNotFoundError as e:
        raise _Damaged(f"{Path(e.filename).name} is missing") from e
    except (LaddError, KeyError, TypeError, ValueError, OSError) as e:  # bad JSON, a truncated or garbled .npy
        raise _Damaged(" ".join(str(e).split()) or type(e).__name__) from e
    _OPENED[str(path)] = (ident, weakref.ref(dataset))
    return dataset


def store_of(dataset: Dataset) -> Path | None:
    """The store folder a dataset was opened from, None for an in-memory dataset."""
    located = stream._located(dataset.train.images)
    return None if located is None else located[0].path.parent


# --- decoding image folders ------------------------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """Decode workers end when the process that started them is gone (e.g. SIGKILLed mid-build)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pwrite(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _decode_task(file: str, offset: int, start: int, paths: list, size: int):
    """Decode `paths` (images start.. of a split) into rows start.. of the .npy `file` (whose data
    begin at `offset`); (start, C×256 pixel histogram of the decoded ones, [(i, why) for failures])."""
    from ladd.data.imagefolder import decode, unreadable

    buf = np.zeros((len(paths), 3, size, size), np.uint8)
    ok = np.ones(len(paths), bool)
    failures = []
    for i, p in enumerate(paths):
        try:
            buf[i] = decode(Path(p), size)
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds on bad files; the caller decides (error or skip)
            ok[i] = False
            failures.append((i, unreadable(Path(p), e)))
    good = buf[ok]
    hist = pixel_histogram(torch.from_numpy(good)).numpy()  # the same count build_dataset's stats are made of
    fd = os.open(file, os.O_WRONLY)
    try:
        _pwrite(fd, memoryview(buf).cast("B"), offset + start * buf[0].nbytes)
    finally:
        os.close(fd)
    return start, hist, failures


def _pool(workers: int):
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent, initargs=(os.getpid(),))


def _decode(staged: Path, splits: dict, classes: list[str], size: int, skip: bool, workers: int) -> dict:
    t0 = time.perf_counter()
    total = sum(len(items) for items in splits.values())
    workers = max(1, min(workers, total // MIN_PER_WORKER))
    pool = _pool(workers) if workers > 1 else None
    hist, skipped = None, []
    try:
        for split, items in splits.items():
            name = "val" if split == "test" else split  # imagefolder's word for its test split
            counts, failed = _decode_split(staged / f"{split}.images.npy", items, size, skip, pool, name)
            if split == "train":
                hist = counts
            keep = np.ones(len(items), bool)
            for i, why in sorted(failed):
                keep[i] = False
                skipped.append(os.fsdecode(items[i][0]))
                logger.warning(f"skipping unreadable image {os.fsdecode(items[i][0])} (--skip-unreadable)")
            labels = np.fromiter((label for _, label in items), np.int64, len(items))[keep]
            # sources list images in every class of both splits; skipping may leave a class none
            kept = np.bincount(labels, minlength=len(classes))
            if not kept.all():
                empty = classes[int(kept.argmin())]
                raise DataError(
                    f"every {name} image of class {empty!r} was unreadable (skipped by --skip-unreadable): "
                    "fix or replace them, or remove the class"
                )
            if not keep.all():
                _compact(staged / f"{split}.images.npy", keep)
            _write_npy(staged / f"{split}.labels.npy", labels)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    mean, std = histogram_stats(hist)
    return {
        "mean": list(mean),
        "std": list(std),
        "skipped": skipped,
        "decode_seconds": round(time.perf_counter() - t0, 3),
        "workers": workers,
    }


def _decode_split(file: Path, items, size: int, skip: bool, pool, name: str):
    """Decode one split into `file` (created here); (its pixel histogram, [(index, why)] unreadable)."""
    images = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(len(items), 3, size, size))
    offset = images.offset
    del images
    tasks = [(str(file), offset, s, [p for p, _ in items[s : s + PER_TASK]], size) for s in range(0, len(items), PER_TASK)]
    hist = np.zeros((3, 256), np.int64)
    failed = []

    def take(result, advance):
        start, counts, failures = result
        hist[...] += counts
        failed.extend((start + i, why) for i, why in failures)
        if failures and not skip:
            raise DataError(min(failed)[1])
        advance(len(tasks[start // PER_TASK][3]))

    with progress.bar(f"Decoding {name} images into the dataset store", len(items)) as advance:
        if pool is None:
            for task in tasks:
                take(_decode_task(*task), advance)
        else:
            pending = {pool.submit(_decode_task, *task) for task in tasks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        try:
                            result = future.result()
                        except BrokenProcessPool as e:
                            raise RunError(f"a decode worker process died ({e}); if ladd runs from a script, {MAIN_GUARD}") from e
                        take(result, advance)
            finally:
                for future in pending:
                    future.cancel()
    return hist, failed


def _compact(file: Path, keep: np.ndarray) -> None:
    """Drop the rows of unreadable images: the kept rows are copied, a chunk at a time, into a new file."""
    old = np.load(file, mmap_mode="r")
    tmp = file.with_name(file.name + ".compact")
    new = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(int(keep.sum()), *old.shape[1:]))
    index = np.flatnonzero(keep)
    for s in range(0, len(index), PER_TASK):
        new[s : s + PER_TASK] = old[index[s : s + PER_TASK]]
    new.flush()
    del old, new
    os.replace(tmp, file)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


# --- `ladd data info`, `ladd cache verify` -------------------------------------------------------------


def describe(path: Path) -> dict:
    """What a store holds, from its store.json (and its size on disk); {} when unreadable."""
    try:
        info = read_json(Path(path) / META, "")
    except LaddError:
        return {}
    splits = info.get("splits", {})
    return {
        "dataset": info.get("dataset"),
        "shape": info.get("shape"),
        "classes": len(info.get("class_names", [])),
        "train": splits.get("train", {}).get("count"),
        "test": splits.get("test", {}).get("count"),
        "mean": info.get("mean"),
        "std": info.get("std"),
        "skipped": len(info.get("skipped", [])),
        "decode_seconds": info.get("decode_seconds"),
        "workers": info.get("workers"),
        "created": info.get("created"),
        "bytes": sum(f.get("bytes", 0) for f in info.get("files", {}).values()),
    }


def stores() -> list[dict]:
    """Every store in the cache: its entry (kind data) and what it holds."""
    return [{"path": str(e.path), "entry": e.path.name, "status": e.status, "bytes": e.bytes, **describe(e.path)} for e in entries([KIND])]


def verify(path: Path) -> str | None:
    """Why a store is broken (a file missing, its SHA-256 not store.json's, an array that does not
    read back with store.json's shape), or None."""
    try:
        info = read_json(Path(path) / META, "")
    except LaddError as e:
        return f"{META}: {e}"
    for name, want in info.get("files", {}).items():
        p = Path(path) / name
        if not p.is_file():
            return f"{name} is missing"
        if sha256(p) != want.get("sha256"):
            return f"{name} does not match the SHA-256 in {META}"
    _OPENED.pop(str(path), None)
    try:
        open_store(path)
    except (_Damaged, FileNotFoundError) as e:
        return str(e)
    return None


def prepare(name: str, *, data_dir, resolution, skip_unreadable: bool, workers: int | None) -> dict:
    """`ladd data prepare`: load (building its store if need be) and say what the store holds."""
    from ladd.data import load_dataset

    t0, before = time.perf_counter(), len(BUILT)
    dataset = load_dataset(name, data_dir=data_dir, resolution=resolution, skip_unreadable=skip_unreadable, workers=workers)
    seconds = time.perf_counter() - t0
    path = store_of(dataset)
    if path is None:
        return {"dataset": dataset.name, "path": None, "seconds": seconds}
    return {"path": str(path), "built": str(path) in BUILT[before:], "seconds": round(seconds, 3), **describe(path)}
