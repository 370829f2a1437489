"""Image folders (ImageNette, Tiny-ImageNet, custom data): decoded once, centre-cropped and resized to uint8."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ladd.core.errors import DataError
from ladd.data import SOURCES, SourceOptions, require_data_dir

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_RESOLUTION = 128  # and the largest own size `default_size` keeps
LAYOUT = "train/<class>/*.jpg and val/<class>/*.jpg (or Tiny-ImageNet's val/images/ + val/val_annotations.txt)"


def _images_under(folder: Path) -> list[Path]:
    """Recursive, so Tiny-ImageNet's train/<wnid>/images/*.JPEG is found; sorted as paths for a
    stable order. Symbolic links to folders are not followed (no loops), to files they are; an
    unreadable folder is a LaddError. os.scandir's entries know their type from the listing, so
    only symbolic links cost a stat (Path.rglob + is_file stats every file: ImageNet has 1.28 M)."""
    found, folders = [], [os.fspath(folder)]
    try:
        while folders:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif os.path.splitext(entry.name)[1].lower() in EXTENSIONS and _is_file(entry):
                        found.append(Path(entry.path))
    except OSError as e:
        raise DataError(f"cannot list {e.filename or folder} ({e.strerror or e}): fix its permissions or remove it") from e
    return sorted(found)


def _is_file(entry: os.DirEntry) -> bool:
    """Whether the entry is a file or a link to one; a dangling or looping link is not (as
    `Path.is_file` answers)."""
    try:
        return entry.is_file()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return False
        raise


def class_name(folder: Path) -> str:
    """A folder's name as a class name: a name that is not UTF-8 keeps its other bytes as \\xNN escapes,
    so class names can always be printed and stored in JSON."""
    return os.fsencode(folder.name).decode("utf-8", "backslashreplace")


def class_dirs(folder: Path) -> dict[str, Path]:
    """Class name → its subfolder (hidden folders skipped)."""
    try:
        return {class_name(p): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    except OSError as e:
        raise DataError(f"cannot list {e.filename or folder} ({e.strerror or e}): fix its permissions or remove it") from e


def _folder_items(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(path, label) for a split laid out as <split>/<class>/...; every class must have images in it."""
    dirs = class_dirs(split_dir)
    missing = [c for c in classes if c not in dirs]
    if missing:
        raise DataError(f"class {missing[0]!r} is in train/ but missing from {split_dir}: every class needs a folder in both splits")
    extra = sorted(set(dirs) - set(classes))
    if extra:
        raise DataError(f"{split_dir / extra[0]} is a class that train/ does not have: remove it or add it to train/")
    items = []
    for label, name in enumerate(classes):
        paths = _images_under(dirs[name])
        if not paths:
            raise DataError(f"no images found under {dirs[name]} (looked for {', '.join(sorted(EXTENSIONS))})")
        items += [(p, label) for p in paths]
    return items


def _annotated_items(val_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """Tiny-ImageNet's val split: val/images/*.JPEG with classes in val/val_annotations.txt (file<TAB>wnid<TAB>...).
    Each image is listed once and must be in val/images/, else the error names the annotations file."""
    annotations = val_dir / "val_annotations.txt"
    index = {c: i for i, c in enumerate(classes)}
    items, seen = [], set()
    try:
        lines = annotations.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {annotations} ({getattr(e, 'strerror', None) or e.__class__.__name__}): fix or re-download it") from e
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{annotations} line {lineno} is not 'file<TAB>class<TAB>...': fix or re-download it")
        if fields[1] not in index:
            raise DataError(f"{annotations} line {lineno} names class {fields[1]!r}, which has no folder under train/")
        if fields[0] in seen:  # a second label for it would put it in the test split twice
            raise DataError(f"{annotations} line {lineno} lists {fields[0]} a second time: fix or re-download it")
        seen.add(fields[0])
        path = val_dir / "images" / fields[0]
        if not path.is_file():
            raise DataError(f"{annotations} line {lineno} lists image {fields[0]}, which is not in {path.parent}: fix or re-download it")
        items.append((path, index[fields[1]]))
    missing = sorted(set(classes) - {classes[label] for _, label in items})
    if missing:
        raise DataError(f"class {missing[0]!r} is in train/ but has no images in {annotations}")
    return items


def _square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize, so no image is distorted whatever its aspect ratio."""
    image.draft("RGB", (size, size))  # JPEG only: decode at a reduced scale (>= size), much faster on big photos
    image = image.convert("RGB")
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + s, top + s))


def decode(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 3×size×size. Any failure to decode it (not an image, truncated, an
    unsupported mode, more pixels than PIL's decompression-bomb limit `Image.MAX_IMAGE_PIXELS`:
    refused before its pixels are decoded) raises; the store turns it into a LaddError or a skip."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a huge image is refused, not decoded
        with Image.open(path) as image:
            return np.asarray(_square(image, size)).transpose(2, 0, 1)


def default_size(paths: list[Path]) -> tuple[int, str]:
    """The side images are stored at when no --resolution is given, and why: the images' own (their
    centre square, no resampling) when every one has the same width and height and its shorter side
    is at most DEFAULT_RESOLUTION, else DEFAULT_RESOLUTION, as a 20 px folder blown up to 128 px
    trains 40 times the pixels for nothing. Reads only file headers and stops at the first image that
    settles it; a file that cannot be opened is left to `decode`, which reports or skips it."""
    shared = None
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    size = image.size
        except Exception:
            continue
        if min(size) > DEFAULT_RESOLUTION:
            return DEFAULT_RESOLUTION, f"{path} is {size[0]}×{size[1]} px"
        if shared not in (None, size):
            return DEFAULT_RESOLUTION, f"the images differ in size ({shared[0]}×{shared[1]} and {size[0]}×{size[1]} px)"
        shared = size
    if shared is None:
        return DEFAULT_RESOLUTION, "no image could be read"
    return min(shared), f"all images are {shared[0]}×{shared[1]} px"


def unreadable(path: Path, error: Exception) -> str:
    """The one-line message of a file `decode` failed on (also what the dataset store's workers report)."""
    why = "too many pixels" if isinstance(error, (Image.DecompressionBombWarning, Image.DecompressionBombError)) else type(error).__name__
    return f"cannot read image {path} ({why}): fix or delete it, or pass --skip-unreadable to skip such files"


@SOURCES.register("imagefolder")
def imagefolder(options: SourceOptions):
    """train/ and val/ folders, one sub-folder per class; val/ becomes the test split. Always RGB."""
    root = require_data_dir(options, "imagefolder", LAYOUT)
    train_dir, val_dir = root / "train", root / "val"
    for split_dir in (train_dir, val_dir):
        if not split_dir.is_dir():
            raise DataError(f"{root} has no {split_dir.name}/ folder: imagefolder expects {LAYOUT}")
    classes = sorted(class_dirs(train_dir))
    if not classes:
        raise DataError(f"no images found under {train_dir}: put them in class folders, {train_dir}/<class>/*.jpg")

    def items() -> tuple[list, list]:
        # the annotations describe val/images/ only: a copy left behind after moving the images into
        # val/<wnid>/ folders (a common reorganisation) is ignored
        if (val_dir / "images").is_dir() and (val_dir / "val_annotations.txt").is_file():
            return _folder_items(train_dir, classes), _annotated_items(val_dir, classes)
        return _folder_items(train_dir, classes), _folder_items(val_dir, classes)

    from ladd.data import store  # decoded in parallel once, memory-mapped afterwards

    # no --resolution: `default_size` reads the headers once; its answer is kept with the store
    sides = range(DEFAULT_RESOLUTION, 0, -1)
    return store.folder_dataset("imagefolder", root, items, classes, options.resolution, options, default=default_size, default_sizes=sides)
