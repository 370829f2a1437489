"""`import`: take an image set distilled by another tool, so LADD can label-augment it.

Reads `.safetensors`, `.npz` (allow_pickle=False) or `.pt` (torch.load weights_only=True), with
tensors named `images`/`labels` (also `x`/`y`, or `image`/`label`); a DD-Ranking-style folder
holding `images.pt` and `labels.pt`; or an image folder of class subfolders (`<class>/*.png`,
classes in sorted folder-name order, as `ladd export --format folder` writes them). Soft labels
(N×C) are read as their argmax class: the label stage makes ladd's own soft labels. Float images are read as
[0, 1] pixels when they lie in [0, 1], as 0–255 pixels when they lie in [0, 255] beyond 1, and
otherwise (negative values) as normalized with the dataset's mean/std; each is quantized to uint8,
which is what LADD stores and counts.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ladd.core.errors import ArtifactError, ConfigError, DataError, LaddError
from ladd.core.io import load_safetensors
from ladd.core.types import ImageSet, denormalize, quantize
from ladd.images import IMAGE_METHODS, ImageRequest

KEYS = (("images", "labels"), ("x", "y"), ("image", "label"))
NAMES = {name for pair in KEYS for name in pair}


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a file or folder, never through pickle."""
    if path.is_dir():
        if (path / "images.pt").is_file() and (path / "labels.pt").is_file():
            return {name: _load_pt(path / f"{name}.pt") for name in ("images", "labels")}
        return read_image_folder(path)
    if not path.is_file():
        raise ArtifactError(f"import file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            return load_safetensors(path)
        if suffix == ".npz":
            if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and refuse it as one
                raise ArtifactError(f"{path} is not an npz (zip) archive: write it with numpy.savez, or import a .safetensors or .pt file")
            with np.load(path, allow_pickle=False) as z:
                _check_npz_sizes(z, path)
                arrays = {k: z[k] for k in z.files}  # each member decompressed once
            for k, a in arrays.items():
                if k in NAMES and a.dtype.kind not in "biuf":
                    raise ArtifactError(
                        f"{path}: {k!r} holds {a.dtype} values, not numbers: store images as pixel values, labels as integer class indices"
                    )
            return {k: torch.from_numpy(a) for k, a in arrays.items() if a.dtype.kind in "biuf"}  # class names etc. skipped
        if suffix in (".pt", ".pth"):
            obj = _load_pt(path)
            if isinstance(obj, (tuple, list)) and len(obj) == 2:
                obj = {"images": obj[0], "labels": obj[1]}
            if not isinstance(obj, dict):
                raise ArtifactError(f"{path} holds a {type(obj).__name__}: expected a dict of tensors or an (images, labels) pair")
            return {k: torch.as_tensor(v) for k, v in obj.items()}
    except LaddError:
        raise
    except Exception as e:  # corrupt or pickled-object files
        raise ArtifactError(f"cannot read {path}: {str(e).splitlines()[0]}") from e
    raise ArtifactError(f"cannot import {path}: use a .safetensors, .npz or .pt file")


def _check_npz_sizes(z, path: Path) -> None:
    """Refuse a member whose header declares more bytes than the member holds, before numpy
    allocates them (a 12-byte member can declare a shape of terabytes)."""
    for info in z.zip.infolist():
        with z.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
        need = math.prod(shape) * dtype.itemsize
        if need > info.file_size:
            raise ArtifactError(f"{path}: {info.filename} declares {tuple(shape)} {dtype} ({need:,} bytes) but holds {info.file_size:,}")


def _load_pt(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled objects beyond plain tensors, corrupt files
        raise ArtifactError(f"cannot read {path}: {str(e).splitlines()[0]}") from e


def read_image_folder(path: Path) -> dict[str, torch.Tensor]:
    """`<class>/*.<png|jpg…>` → uint8 N×C×H×W images and labels by sorted class-folder order."""
    from PIL import Image

    from ladd.data.imagefolder import EXTENSIONS, class_dirs

    classes = sorted(class_dirs(path).values())
    if not classes:
        raise ArtifactError(f"{path} has no class subfolders and no images.pt/labels.pt: nothing to import")
    images, labels = [], []
    for k, folder in enumerate(classes):
        try:
            files = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS)
        except OSError as e:
            raise ArtifactError(f"cannot list {folder} ({e.strerror or e}): fix its permissions or remove it") from e
        for file in files:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)  # refused before decoding
                    with Image.open(file) as im:
                        array = np.asarray(im)
            except Exception as e:  # not an image, truncated, too many pixels, unreadable: PIL raises many kinds
                raise ArtifactError(f"cannot read image {file} ({type(e).__name__}): fix or delete it") from e
            images.append(torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1))
            labels.append(k)
    if not images:
        raise ArtifactError(f"{path}: its class folders hold no .png/.jpg images")
    if len({tuple(t.shape) for t in images}) > 1:
        raise ArtifactError(f"{path}: images differ in size; every image must have the dataset's shape")
    return {"images": torch.stack(images), "labels": torch.tensor(labels)}


@IMAGE_METHODS.register("import", aliases=("imported",))
def import_images(req: ImageRequest) -> ImageSet:
    if req.path is None:
        raise ConfigError(
            "--images import needs --import-path PATH (.safetensors, .npz, .pt, a folder with images.pt + labels.pt, or an image folder)"
        )
    tensors = read_tensors(Path(req.path))
    names = next((k for k in KEYS if k[0] in tensors and k[1] in tensors), None)
    if names is None:
        raise ArtifactError(f"{req.path} has tensors {sorted(tensors)}: expected 'images' and 'labels'")
    images, labels = tensors[names[0]], tensors[names[1]]
    if images.numel() == 0 or labels.numel() == 0 or images.is_complex() or labels.is_complex():
        raise ArtifactError(
            f"{req.path}: images {tuple(images.shape)} {images.dtype} and labels {tuple(labels.shape)} {labels.dtype} "
            f"must be non-empty real tensors"
        )
    # class indices saved as floats (numpy's default) are read when whole; .long() would truncate 2.5 to 2
    whole = labels.is_floating_point() and bool(torch.isfinite(labels).all()) and bool((labels == labels.round()).all())
    if labels.ndim != 2 and ((labels.is_floating_point() and not whole) or labels.dtype == torch.bool):
        raise ArtifactError(
            f"{req.path}: labels are {str(labels.dtype).removeprefix('torch.')}: store them as integer class indices (or N×C soft labels)"
        )
    labels = (labels.argmax(1) if labels.ndim == 2 else labels).long()  # soft labels → their class
    ds = req.dataset
    if images.ndim == 4 and images.shape[1] != ds.shape[0] and images.shape[-1] == ds.shape[0]:
        images = images.permute(0, 3, 1, 2)  # N×H×W×C → N×C×H×W
    if images.ndim != 4 or tuple(images.shape[1:]) != ds.shape:
        raise DataError(f"{req.path}: images have shape {tuple(images.shape)}, but {ds.name} needs N×{'×'.join(map(str, ds.shape))}")
    if labels.shape != (images.shape[0],) or labels.min() < 0 or labels.max() >= ds.num_classes:
        raise DataError(f"{req.path}: labels must be {images.shape[0]} class indices in [0, {ds.num_classes})")
    if images.dtype != torch.uint8:
        x = images.float()
        if not torch.isfinite(x).all():
            raise ArtifactError(f"{req.path}: images contain NaN or infinite values")
        if x.min() >= 0 and 1 < x.max() <= 255:
            x = x / 255
        elif x.min() < 0 or x.max() > 1:
            x = denormalize(x, ds.mean, ds.std)
        images = quantize(x.clamp(0, 1) * 255)
    return ImageSet(images.contiguous(), labels, flops=None)  # what another tool spent is unknown
