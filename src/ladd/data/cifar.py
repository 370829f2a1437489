"""CIFAR-10/100 from the official python-pickle folders (cifar-10-batches-py/, cifar-100-python/).

The files are pickles, and a pickle can run arbitrary code on load; they are read with an unpickler that
only resolves the few globals numpy array reconstruction needs, so a tampered download cannot execute anything.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import torch

from ladd.core.errors import DataError, LaddError
from ladd.core.types import ImageSet
from ladd.data import SOURCES, SourceOptions, build_dataset, require_data_dir, store

try:  # numpy >= 2 moved the module; old and new pickles name either spelling
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """Python 3 pickles at protocol <= 2 store bytes as `_codecs.encode(text, 'latin1')`; allow only that."""
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"pickle asks to encode bytes as {encoding!r}, not latin1: the file is not a CIFAR pickle")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals listed in `_ALLOWED`; anything else is refused before it can be called."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # CIFAR files are Python 2 pickles with bytes keys
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.path} references {module}.{name}, which a CIFAR pickle never needs: refusing to load it "
                "(it could run code); re-download the dataset from its official source"
            ) from None


def load_pickle(path: Path):
    """Load one CIFAR pickle safely; a missing or damaged file is a LaddError naming it."""
    if not path.is_file():
        raise DataError(f"missing {path}: extract the official CIFAR python archive there (or fix --data-dir)")
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, path).load()
    except LaddError:
        raise
    except Exception as e:  # a damaged pickle can fail in many ways; all mean "re-download"
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise DataError(f"{path} is not a readable CIFAR pickle ({reason}): re-download it") from e


def _field(obj, key: bytes, path: Path):
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path} has no {key!r} entry: it is not a CIFAR file of the expected kind, re-download it")
    return obj[key]


def _array(obj, key: bytes, path: Path) -> np.ndarray:
    """A field as an array; one that numpy cannot make an array of (ragged lists, ...) is a DataError."""
    try:
        return np.asarray(_field(obj, key, path))
    except (TypeError, ValueError) as e:
        raise DataError(f"{path} has a {key!r} entry that is not an array ({type(e).__name__}): re-download it") from e


def _batches(paths: list[Path], label_key: bytes, num_classes: int) -> ImageSet:
    images, labels = [], []
    for path in paths:
        batch = load_pickle(path)
        data, batch_labels = _array(batch, b"data", path), _array(batch, label_key, path)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path} holds {data.dtype} data of shape {data.shape}, not uint8 (N, 3072): re-download it")
        # integers only: floats would be truncated to a class silently (an empty list reads as float64)
        if batch_labels.size and batch_labels.dtype.kind not in "iu":
            raise DataError(f"{path} has {batch_labels.dtype} values in {label_key!r}, not integer class indices: re-download it")
        if batch_labels.shape != (data.shape[0],) or batch_labels.min(initial=0) < 0 or batch_labels.max(initial=0) >= num_classes:
            raise DataError(f"{path} has labels that do not match its {data.shape[0]} images or {num_classes} classes: re-download it")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are R, G, B planes of 32×32, i.e. already CHW
        labels.append(batch_labels.astype(np.int64))
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _folder(options: SourceOptions, dataset: str, folder: str) -> Path:
    """Accept either the extracted folder itself or its parent."""
    root = require_data_dir(options, dataset, f"{folder}/ (or that folder itself)")
    return root / folder if (root / folder).is_dir() else root


def _names(path: Path, key: bytes) -> list[str]:
    names = _field(load_pickle(path), key, path)
    try:
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except (TypeError, UnicodeDecodeError) as e:  # not a list, or names that are not UTF-8
        raise DataError(f"{path} has a {key!r} entry that is not a list of class names ({type(e).__name__}): re-download it") from e


CIFAR10_FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR100_FILES = ("meta", "train", "test")


@SOURCES.register("cifar10")
def cifar10(options: SourceOptions):
    """CIFAR-10: 50,000 train images in data_batch_1..5, 10,000 test images in test_batch."""
    folder = _folder(options, "cifar10", "cifar-10-batches-py")

    def parse():
        names = _names(folder / "batches.meta", b"label_names")
        train = _batches([folder / f"data_batch_{i}" for i in range(1, 6)], b"labels", len(names))
        test = _batches([folder / "test_batch"], b"labels", len(names))
        return build_dataset("cifar10", train, test, names)

    return store.file_dataset("cifar10", [folder / f for f in CIFAR10_FILES], options, parse)  # parsed once, memory-mapped after


@SOURCES.register("cifar100")
def cifar100(options: SourceOptions):
    """CIFAR-100 with its 100 fine labels (the 20 coarse superclasses are not used)."""
    folder = _folder(options, "cifar100", "cifar-100-python")

    def parse():
        names = _names(folder / "meta", b"fine_label_names")
        train = _batches([folder / "train"], b"fine_labels", len(names))
        test = _batches([folder / "test"], b"fine_labels", len(names))
        return build_dataset("cifar100", train, test, names)

    return store.file_dataset("cifar100", [folder / f for f in CIFAR100_FILES], options, parse)
