"""Export an artifact to the formats other tools read, so others can evaluate what ladd made.

- `pt`: DD-Ranking style `images.pt` (float32 N×C×H×W pixels in [0, 1], not normalized) and
  `labels.pt` (the soft labels N×C when the artifact has them, else int64 class indices), plus
  `lr.pt` when the image method learned a student lr (MTT). Plain tensors: torch.load(...,
  weights_only=True) reads them.
- `npz`: `images` (uint8, or float32 0..255 for unquantized learned images), `labels` (int64),
  `soft_labels` when present and `class_names`; np.load(..., allow_pickle=False) reads it. An
  `--out` without the `.npz` suffix gets it: the importer recognizes the format by its suffix.
- `folder`: `<index>_<class name>/<n>.png`, one PNG per image (8-bit, so float pixels are rounded);
  the zero-padded index keeps the class order when a reader sorts folder names.

`ladd distill --images import --import-path` reads all three back (round-trip tested). Files and
folders get the modes of ordinary ones (umask applied), not a temporary folder's private 0700.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ladd.artifact import Artifact
from ladd.core.errors import ArtifactError, ConfigError
from ladd.core.io import atomic_write, staging_dir

FORMATS = ("pt", "npz", "folder")


def export(art: Artifact, out: Path, fmt: str) -> Path:
    """Write `art` to `out` in `fmt` (npz: `out` with the `.npz` suffix added when missing); atomic
    (a temporary sibling renamed into place; `staging_dir` gives it an ordinary folder's mode).
    Returns the path written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if fmt == "npz" and out.suffix.lower() != ".npz":
        out = out.with_name(out.name + ".npz")
    if out.exists():
        raise ArtifactError(f"{out} already exists: choose a new --out path")
    out.parent.mkdir(parents=True, exist_ok=True)
    classes = art.manifest.get("source", {}).get("class_names") or [str(k) for k in range(int(art.labels.max()) + 1)]
    if fmt == "npz":
        arrays = {"images": art.images.numpy(), "labels": art.labels.numpy(), "class_names": np.array(classes, dtype=str)}
        if art.soft_labels is not None:
            arrays["soft_labels"] = art.soft_labels.float().numpy()

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare path
                np.savez(f, **arrays)

        atomic_write(out, save)
        return out
    tmp = staging_dir(out)
    try:
        if fmt == "pt":
            torch.save(art.images.float() / 255, tmp / "images.pt")
            torch.save(art.labels if art.soft_labels is None else art.soft_labels.float(), tmp / "labels.pt")
            lr = (art.manifest.get("images", {}).get("learned") or {}).get("lr")
            if lr is not None:
                torch.save(torch.tensor(float(lr)), tmp / "lr.pt")
        else:
            pixels = art.images.float().round().clamp(0, 255).to(torch.uint8)
            for i, (image, label) in enumerate(zip(pixels, art.labels.tolist())):
                folder = tmp / class_folder(label, classes[label])
                folder.mkdir(exist_ok=True)
                array = image.permute(1, 2, 0).numpy()
                Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(folder / f"{i:05d}.png")
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def class_folder(index: int, name: str) -> str:
    """`003_cat`: sortable by index, readable by name, safe as a file name."""
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"
