"""ImageNet-1K (ILSVRC-2012) and the 10-class ImageNet subsets of MTT and GLaD.

`--dataset imagenet` reads the standard layout, `train/<wnid>/*.JPEG` plus either `val/<wnid>/*.JPEG`
or a flat `val/*.JPEG` labelled by Kaggle's `LOC_val_solution.csv` (columns ImageId,PredictionString;
the prediction string starts with the WNID). `--data-dir` is the folder holding train/ and val/, or
the Kaggle download itself (its `ILSVRC/Data/CLS-LOC/` is then used); the CSV and the optional
`LOC_synset_mapping.txt` are looked for in the data dir, its parent and the Kaggle download's top
folder. Classes are the WNID folders of train/, in sorted WNID order: the class index order of
torchvision's ImageNet and of ImageNet-pretrained networks.

`--dataset imagenette|imagewoof|imagefruit|imagemeow|imagesquawk|imageyellow` read the same ImageNet-1K
folder and keep the 10 classes of that subset. Which classes: MTT's lists of ImageNet class indices
(`MTT_SUBSETS`). Their order: sorted WNID, NOT the order of MTT's list. Sorted order is what
`--dataset imagefolder` gives on a downloaded fast.ai `imagenette2`/`imagewoof2` folder (it sorts its
class folders, which are these WNIDs), so both ways to the same images agree on labels; MTT's list
order differs for every subset but imagenette (whose list is sorted), so it could not be kept for
both. MTT labels class c of a subset as position c in its list (utils.py `get_dataset`), so a label
of an MTT buffer maps to ladd's label through `mtt_wnids(name)` → `subset_wnids(name).index(wnid)`.

Human-readable class names are recorded in `ImageNetDataset.descriptions` when a
LOC_synset_mapping.txt is found; `class_names` stay the WNIDs, so the class order never depends on it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path

from ladd.core.errors import DataError
from ladd.core.types import Dataset
from ladd.data import SOURCES, SourceOptions, imagefolder, require_data_dir, store

WNID = re.compile(r"n\d{8}")
# Full ImageNet at 64 px is 1.28M × 12 KiB ≈ 16 GB of uint8 in memory (128 px: ≈ 63 GB); the subsets
# use imagefolder's 128 px, the resolution of the ImageNet subsets in MTT (utils.py im_size) and the LADD paper.
DEFAULT_RESOLUTION = 64
SUBSET_RESOLUTION = imagefolder.DEFAULT_RESOLUTION
SOLUTION_CSV = "LOC_val_solution.csv"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
KAGGLE_DATA = Path("ILSVRC", "Data", "CLS-LOC")  # where Kaggle's download keeps train/ and val/
LAYOUT = (
    f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or a flat val/*.JPEG with {SOLUTION_CSV} in the data dir or its parent (Kaggle's layout)"
)

# ImageNet-1K class indices (into the sorted WNIDs) of each subset, in MTT's order. Source:
# GeorgeCazenavette/mtt-distillation@50dccea47ba48b9cfb3b9c59375d7da92e4e603b utils.py, class
# `Config` (lines 17-42). GLaD uses the same lists (GeorgeCazenavette/glad@d221e9c905d86b2f0484aaa1032f61036dd79dc8
# utils.py `Config`: imagenette, imagewoof, and imagemeow, imagesquawk, fruits, yellow under the
# names cats, birds, fruits, yellow). fast.ai's imagenette2/imagewoof2 folders hold the same WNIDs
# as imagenette/imagewoof here (fastai/imagenette@ba8db395 noisy_imagenette.csv, noisy_imagewoof.csv).
MTT_SUBSETS: dict[str, tuple[int, ...]] = {
    "imagenette": (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
    "imagewoof": (193, 182, 258, 162, 155, 167, 159, 273, 207, 229),
    "imagefruit": (953, 954, 949, 950, 951, 957, 952, 945, 943, 948),
    "imagemeow": (281, 282, 283, 284, 285, 291, 292, 290, 289, 287),
    "imagesquawk": (84, 130, 88, 144, 145, 22, 96, 9, 100, 89),
    "imageyellow": (309, 986, 954, 951, 987, 779, 599, 291, 72, 11),
}


@dataclass(frozen=True)
class ImageNetDataset(Dataset):
    """A Dataset that also records each class's human-readable name ("tench, Tinca tinca"), taken
    from LOC_synset_mapping.txt; () when no mapping was found. Only `class_names` (WNIDs) key caches."""

    descriptions: tuple[str, ...] = ()


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1K WNIDs in sorted order (index = ImageNet class index); see the data file's header."""
    text = resources.files("ladd.data").joinpath("imagenet_wnids.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def mtt_wnids(name: str) -> tuple[str, ...]:
    """A subset's WNIDs in MTT's list order (position = MTT's label)."""
    wnids = imagenet_wnids()
    return tuple(wnids[i] for i in MTT_SUBSETS[name])


def subset_wnids(name: str) -> tuple[str, ...]:
    """A subset's WNIDs in ladd's class order: sorted, the order `--dataset imagefolder` gives."""
    return tuple(sorted(mtt_wnids(name)))


def _locate(data_dir: Path) -> tuple[Path, list[Path]]:
    """(the folder holding train/ and val/, the folders that may hold Kaggle's LOC_* files)."""
    root = data_dir
    if not (data_dir / "train").is_dir() and (data_dir / KAGGLE_DATA / "train").is_dir():
        root = data_dir / KAGGLE_DATA
    absolute = root.resolve()
    search = [data_dir.resolve(), data_dir.resolve().parent]
    if absolute.parts[-3:] == KAGGLE_DATA.parts:
        search.append(absolute.parents[2])
    return root, list(dict.fromkeys(search))


def _find(name: str, folders: list[Path]) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({getattr(e, 'strerror', None) or type(e).__name__}): fix or re-download it") from e


def _descriptions(mapping: Path | None, classes: list[str]) -> tuple[str, ...]:
    """Each class's name from LOC_synset_mapping.txt ('<wnid> <names>' per line), '' if it has none."""
    if mapping is None:
        return ()
    names = {}
    for line in _read_lines(mapping):
        wnid, _, text = line.strip().partition(" ")
        names[wnid] = text.strip()
    return tuple(names.get(c, "") for c in classes)


def _class_items(split_dir: Path, classes: list[str], dirs: dict[str, Path], dataset: str) -> list[tuple[Path, int]]:
    """(path, label) for <split>/<wnid>/... in class order, then file order (as imagefolder does)."""
    missing = [wnid for wnid in classes if wnid not in dirs]  # checked before listing any (slow) folder
    if missing:
        raise DataError(
            f"{dataset} needs class {missing[0]} but folder {split_dir / missing[0]} does not exist: "
            f"point --data-dir at a full ImageNet-1K folder ({LAYOUT})"
        )
    items = []
    for label, wnid in enumerate(classes):
        paths = imagefolder._images_under(dirs[wnid])
        if not paths:
            raise DataError(f"no images found under {dirs[wnid]} (looked for {', '.join(sorted(imagefolder.EXTENSIONS))})")
        items += [(p, label) for p in paths]
    return items


def _solution_items(val_dir: Path, solution: Path, classes: list[str], every_row: bool) -> list[tuple[Path, int]]:
    """Kaggle's flat val/: ImageId,PredictionString rows; the first token of PredictionString is
    the WNID. `every_row`: a row of a class outside `classes` is an error (full ImageNet), not skipped."""
    try:
        files = {p.stem: p for p in val_dir.iterdir() if p.suffix.lower() in imagefolder.EXTENSIONS and p.is_file()}
    except OSError as e:
        raise DataError(f"cannot list {val_dir} ({e.strerror or e}): fix its permissions") from e
    index = {c: i for i, c in enumerate(classes)}
    rows = csv.reader(_read_lines(solution))
    if [h.strip() for h in next(rows, [])[:2]] != ["ImageId", "PredictionString"]:
        raise DataError(f"{solution} does not start with the header 'ImageId,PredictionString': fix or re-download it")
    items, seen = [], set()
    for lineno, row in enumerate(rows, 2):
        if not any(cell.strip() for cell in row):
            continue
        tokens = row[1].split() if len(row) >= 2 else []
        if not tokens or not WNID.fullmatch(tokens[0]):
            raise DataError(f"{solution} line {lineno} is not 'ImageId,<wnid> ...': fix or re-download it")
        image_id, wnid = row[0].strip(), tokens[0]
        if image_id in seen:
            raise DataError(f"{solution} line {lineno} lists {image_id} a second time: fix or re-download it")
        seen.add(image_id)
        if wnid not in index:
            if every_row:
                raise DataError(f"{solution} line {lineno} names class {wnid}, which has no folder under train/")
            continue
        if image_id not in files:
            raise DataError(f"{solution} line {lineno} lists image {image_id}, which is not in {val_dir}")
        items.append((files[image_id], index[wnid]))
    missing = sorted(set(classes) - {classes[label] for _, label in items})
    if missing:
        raise DataError(f"class {missing[0]} has no images in {solution}: every class needs validation images")
    # class order, then file name: the order val/<wnid>/ folders give, so both layouts load the same tensors
    return sorted(items, key=lambda item: (item[1], item[0].name))


def _val_items(val_dir: Path, classes: list[str], search: list[Path], dataset: str, every_class: bool) -> list[tuple[Path, int]]:
    dirs = {name: path for name, path in imagefolder.class_dirs(val_dir).items() if WNID.fullmatch(name)}
    if dirs:
        extra = sorted(set(dirs) - set(classes)) if every_class else []
        if extra:
            raise DataError(f"{val_dir / extra[0]} is a class that train/ does not have: remove it or add it to train/")
        return _class_items(val_dir, classes, dirs, dataset)
    solution = _find(SOLUTION_CSV, search)
    if solution is None:
        where = ", ".join(str(folder) for folder in search)
        raise DataError(
            f"{val_dir} has no val/<wnid>/ class folders and no {SOLUTION_CSV} was found (looked in {where}): {dataset} expects {LAYOUT}; "
            f"the official ILSVRC2012_img_val.tar unpacks flat: sort it into val/<wnid>/ with valprep.sh (soumith/imagenetloader.torch) "
            f"or pytorch/examples' imagenet/extract_ILSVRC.sh"
        )
    return _solution_items(val_dir, solution, classes, every_class)


def load_imagenet(options: SourceOptions, dataset: str, selection: tuple[str, ...] | None, resolution: int) -> ImageNetDataset:
    """ImageNet-1K from disk, all of train/'s classes (`selection` None) or the sorted `selection`."""
    data_dir = require_data_dir(options, dataset, LAYOUT)
    root, search = _locate(data_dir)
    train_dir, val_dir = root / "train", root / "val"
    for split_dir in (train_dir, val_dir):
        if not split_dir.is_dir():
            raise DataError(f"{root} has no {split_dir.name}/ folder: {dataset} expects {LAYOUT}")
    train_dirs = imagefolder.class_dirs(train_dir)
    known = set(imagenet_wnids())
    if selection is None:
        classes = sorted(train_dirs)
        if not classes:
            raise DataError(f"no class folders under {train_dir}: {dataset} expects {LAYOUT}")
        odd = [c for c in classes if c not in known]
        if odd:
            raise DataError(
                f"{train_dir / odd[0]} is not an ImageNet-1K class (WNID): remove it, or use --dataset imagefolder for other classes"
            )
    else:
        classes = sorted(selection)

    def items() -> tuple[list, list]:  # under torchrun on rank 0 (`store.folder_dataset`)
        train = _class_items(train_dir, classes, train_dirs, dataset)
        return train, _val_items(val_dir, classes, search, dataset, every_class=selection is None)

    size = options.resolution or resolution
    base = store.folder_dataset(dataset, root, items, classes, size, options)  # decoded once, memory-mapped after
    descriptions = _descriptions(_find(SYNSET_MAPPING, search), classes)
    return ImageNetDataset(**{f.name: getattr(base, f.name) for f in fields(Dataset)}, descriptions=descriptions)


@SOURCES.register("imagenet", aliases=("imagenet1k", "ilsvrc2012"))
def imagenet(options: SourceOptions):
    """ImageNet-1K (ILSVRC-2012): every WNID folder of train/, sorted; default 64 px."""
    return load_imagenet(options, "imagenet", None, DEFAULT_RESOLUTION)


def _register_subset(name: str) -> None:
    def source(options: SourceOptions):
        return load_imagenet(options, name, subset_wnids(name), SUBSET_RESOLUTION)

    source.__doc__ = f"{name}: 10 ImageNet-1K classes (MTT's list), sorted by WNID; default {SUBSET_RESOLUTION} px."
    SOURCES.register(name)(source)


for _name in MTT_SUBSETS:
    _register_subset(_name)
