"""MNIST-format IDX files (also Fashion-MNIST, KMNIST), plain or gzipped, parsed with numpy alone."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ladd.core.errors import DataError
from ladd.core.types import ImageSet
from ladd.data import SOURCES, SourceOptions, build_dataset, require_data_dir, store
from ladd.data.embedded import DIGIT_NAMES

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x0803: uint8 with 3 dims; 0x0801: uint8 with 1 dim
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find(folder: Path, base: str) -> Path:
    for path in (folder / base, folder / f"{base}.gz"):
        if path.is_file():
            return path
    raise DataError(f"missing {folder / base} (or .gz): mnist-idx needs {', '.join(FILES)} in --data-dir")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file, checking its magic number and that its size matches the header's dims."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} ({' '.join(str(e).split())}): re-download it") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic {found}, expected {magic}): re-download it")
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header: re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path} holds {len(raw) - header} data bytes but its header says {dims}: re-download it")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()  # copy: writable, owns its memory


def _split(folder: Path, prefix: str) -> ImageSet:
    images_path, labels_path = _find(folder, f"{prefix}-images-idx3-ubyte"), _find(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path, IMAGES_MAGIC), read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels: re-download them")
    if labels.size and labels.max() >= len(DIGIT_NAMES):
        raise DataError(f"{labels_path} has label {labels.max()}, but IDX datasets have 10 classes: re-download it")
    return ImageSet(torch.from_numpy(images[:, None]), torch.from_numpy(labels.astype(np.int64)))


@SOURCES.register("mnist-idx", aliases=("mnist",))
def mnist_idx(options: SourceOptions):
    """The full MNIST (or any same-format set such as Fashion-MNIST) from its four IDX files."""
    folder = require_data_dir(options, "mnist-idx", ", ".join(FILES) + " (each may be .gz)")
    files = [folder / name for base in FILES for name in (base, f"{base}.gz")]  # whichever exist: both are keyed
    return store.file_dataset(
        "mnist-idx",
        files,
        options,  # parsed once, memory-mapped after
        lambda: build_dataset("mnist-idx", _split(folder, "train"), _split(folder, "t10k"), DIGIT_NAMES),
    )
