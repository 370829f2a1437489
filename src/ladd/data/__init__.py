"""Data sources: each turns a name (plus an optional folder) into a `Dataset` of uint8 images.

Sources are plain functions `source(SourceOptions) -> Dataset` in the `SOURCES` registry, so adding
a dataset is one decorated function; `load_dataset` is the only entry point the rest of ladd uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ladd.core.errors import ConfigError, DataError
from ladd.core.registry import Registry, modules
from ladd.core.types import Dataset, ImageSet, channel_stats
from ladd.data import stream

SOURCES = Registry("dataset", modules(__name__, "cifar", "embedded", "idx", "imagefolder", "imagenet"))


@dataclass(frozen=True)
class SourceOptions:
    """What a user may say about a source; sources ignore what does not apply to them."""

    data_dir: Path | None = None
    resolution: int | None = None
    skip_unreadable: bool = False
    workers: int | None = None  # processes decoding a source into its store (`ladd.data.store`); None: $LADD_WORKERS or all CPUs


def load_dataset(name: str, *, data_dir=None, resolution=None, skip_unreadable=False, workers=None) -> Dataset:
    """Load a registered dataset; all bad input surfaces as a one-line `LaddError`. On-disk sources
    are decoded once into a memory-mapped store (`ladd.data.store`; `workers` processes decode it)
    and opened from it afterwards."""
    source = SOURCES.get(name)
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DataError(f"data dir {data_dir} does not exist or is not a folder: check --data-dir")
    if resolution is not None and resolution < 1:
        raise ConfigError(f"resolution must be a positive number of pixels, got {resolution}: fix --resolution")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, got {workers}: fix --workers")
    dataset = source(SourceOptions(data_dir, resolution, skip_unreadable, workers))
    # Fixed-size sources do not resize; failing beats silently training at a size the user did not ask for.
    if resolution is not None and dataset.shape[1:] != (resolution, resolution):
        size = "×".join(map(str, dataset.shape[1:]))
        raise ConfigError(f"dataset {SOURCES.canonical(name)!r} has a fixed size of {size}: drop --resolution {resolution}")
    return dataset


# on-disk sources with a shipped stand-in that needs no download (`--dataset mnist` is mnist-idx)
SHIPPED_INSTEAD = {"mnist-idx": "mnist5k (5,000 MNIST images shipped with ladd)"}


def require_data_dir(options: SourceOptions, dataset: str, holding: str) -> Path:
    """The folder of an on-disk source, or an error telling the user which folder to pass (or
    which shipped dataset needs none)."""
    if options.data_dir is None:
        instead = f", or use --dataset {SHIPPED_INSTEAD[dataset]}, which needs no --data-dir" if dataset in SHIPPED_INSTEAD else ""
        raise ConfigError(f"dataset {dataset!r} reads from disk: pass --data-dir PATH to the folder holding {holding}{instead}")
    return options.data_dir


def build_dataset(name: str, train: ImageSet, test: ImageSet, class_names) -> Dataset:
    """Assemble a Dataset; mean/std come from the TRAIN split only, so test data never leaks into training.
    A split without images is refused: its mean/std (or accuracy) would be NaN, and a store cannot hold NaN."""
    for split, part in (("train", train), ("test", test)):
        if not len(part):
            raise DataError(f"the {split} split of {name} has no images: its files under --data-dir hold none, re-download them")
    mean, std = channel_stats(train.images)
    return Dataset(name, train, test, tuple(class_names), mean, std)


def holdout(dataset: Dataset, per_class: int, seed: int = 0) -> Dataset:
    """The training split minus `per_class` random images of each class, with those images as the
    test split: selection (expert epochs, hyperparameters) runs on this dataset and never sees the
    real test split. Normalization stays the full training split's, so checkpoints transfer.
    The training remainder of a stored split is an index view of it (`stream.rows`), not a copy."""
    labels = dataset.train.labels
    gen = torch.Generator().manual_seed(seed)
    val = []
    for k in range(dataset.num_classes):
        members = (labels == k).nonzero().flatten()
        if len(members) <= per_class:
            raise ConfigError(
                f"class {dataset.class_names[k]!r} has {len(members)} training images: "
                f"a validation split of {per_class} per class leaves none to train on (lower it)"
            )
        val.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    val = torch.cat(val).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    name = f"{dataset.name}-holdout{per_class}s{seed}"
    rest = keep.nonzero().flatten()
    regions = None if dataset.train.regions is None else dataset.train.regions[rest]
    train = ImageSet(stream.rows(dataset.train.images, rest), labels[rest], dataset.train.info, regions, dataset.train.flops)
    return replace(dataset, name=name, train=train, test=dataset.train.subset(val))
