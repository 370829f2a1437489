"""The stored relabel (FKD-style soft labels) of an artifact: `ARTIFACT/relabel/`.

    relabel.json              config, teacher provenance, images SHA-256, counts, every file's SHA-256
    epoch_0000.safetensors    one per relabel epoch, K = the artifact's N images, rows in visit order:
        order       int64   K        image index of each row (the explicit sample order; LPLD's
                                     sampler_indices_epoch.json); relabel batch b = rows b·B …
        crop, flip, mix_index, mix_lambda, mix_box   (see `ladd.augment.fkd.Epoch`; λ and box once
                                     per relabel batch, or per row when relabel.json says mix_per "sample")
        labels      float16/32 K×C   teacher logits or probabilities (T applied), or with top-k:
        label_values float K×k + label_index int16 K×k

One file per epoch so relabel checkpoints and resumes per epoch. The reference stores the same
fields as pickled per-batch `.tar` files (VILA-Lab/SRe2L@8d00cba relabel/utils_fkd.py); here they
are safetensors with the partner as an image index, so nothing is unpickled and replay needs no
patched loader.
Loading checks each file's SHA-256, the tensor names, shapes and dtypes, the counts against
relabel.json and the artifact, and finite values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ladd.augment.fkd import PARAMS, Epoch
from ladd.core.errors import ArtifactError
from ladd.core.io import load_safetensors, read_json, save_tensors, sha256, write_json
from ladd.cost.storage import CHUNK, raw_bytes, zip_bytes

RELABEL_DIR = "relabel"
INFO = "relabel.json"
# The six stored components of LPLD Table 24 and the tensors each is made of.
COMPONENTS = {
    "crop": ("crop",),
    "flip": ("flip",),
    "mix_index": ("mix_index",),
    "mix_lambda": ("mix_lambda",),
    "mix_box": ("mix_box",),
    "labels": ("labels", "label_values", "label_index"),
}


def epoch_file(e: int) -> str:
    return f"epoch_{e:04d}.safetensors"


@dataclass(frozen=True)
class RelabelStore:
    """The stored epochs: `files[e]` holds epoch e's tensors (K(×…) each), memory-mapped from its
    file, so the store costs page cache, not a copy per process: ImageNet-1K's 300 epochs of
    50,000 × 1,000 fp16 logits are 30 GB, which the 8 ranks of a node share; `info` is relabel.json."""

    directory: Path
    info: dict
    files: tuple[dict[str, torch.Tensor], ...]

    @property
    def epochs(self) -> int:
        return int(self.info["epochs"])

    @property
    def samples(self) -> int:
        return int(self.info["samples"])

    @property
    def batch_size(self) -> int:
        return int(self.info["batch_size"])

    @property
    def mix_batch(self) -> int | None:
        """Rows per CutMix draw (the relabel batch), or None for a draw per row (`mix_per` "sample")."""
        return self.batch_size if self.info["mix_per"] == "batch" else None

    def epoch(self, e: int) -> Epoch:
        return Epoch(**{k: self.files[e][k] for k in ("order", *PARAMS)}, mix_batch=self.mix_batch)

    def gather(self, name: str, at: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor `name` of every epoch, concatenated (epoch-major), or only its rows at flat
        positions `at` (e·rows + row, in the given order)."""
        if at is None:
            return torch.cat([f[name] for f in self.files])
        return by_epoch(at, len(self.files[0][name]), lambda e, rows: self.files[e][name][rows])

    def targets(self, e: int, rows: torch.Tensor) -> torch.Tensor:
        """Probability targets of rows of epoch e: softmax(logits / T), or the stored
        probabilities (top-k ones scattered into zeros, not renormalized)."""
        info, t = self.info, self.files[e]
        if info["top_k"] is not None:
            values = t["label_values"][rows].float()
            return torch.zeros(len(rows), info["classes"]).scatter_(1, t["label_index"][rows].long(), values)
        labels = t["labels"][rows].float()
        return (labels / info["temperature"]).softmax(-1) if info["kind"] == "logits" else labels

    def storage(self, positions: torch.Tensor | None = None) -> dict[str, dict[str, int]]:
        """Raw and zip bytes of the six components (top-k labels: values + indices) over every
        epoch, or over the rows at flat `positions` (e·K + k) only: what a pruned label pool
        keeps. Each tensor is compressed as one stream of its epochs (or of its kept rows,
        gathered a chunk at a time), never copied whole. The sample order is not counted: it is
        a permutation a seed regenerates (the reference stores it as a JSON side file)."""
        draws = None
        if positions is not None and self.mix_batch is not None:  # the batches any kept row belongs to
            per_epoch = self.files[0]["mix_lambda"].shape[0]
            draws = (positions // self.samples * per_epoch + positions % self.samples // self.mix_batch).unique()
        per_tensor = {}
        for p in (p for parts in COMPONENTS.values() for p in parts if p in self.files[0]):
            at = draws if draws is not None and p in ("mix_lambda", "mix_box") else positions
            row = raw_bytes(self.files[0][p][0])
            if at is None:
                nbytes, stream = self.epochs * len(self.files[0][p]) * row, (f[p] for f in self.files)
            else:
                nbytes, stream = len(at) * row, (self.gather(p, rows) for rows in at.split(max(1, CHUNK // row)))
            per_tensor[p] = {"raw": nbytes, "zip": zip_bytes(stream, p, nbytes)}
        return {
            name: {kind: sum(per_tensor[p][kind] for p in parts if p in per_tensor) for kind in ("raw", "zip")}
            for name, parts in COMPONENTS.items()
        }


def by_epoch(positions: torch.Tensor, per_epoch: int, fn) -> torch.Tensor:
    """fn(e, rows) for the flat `positions` (e·per_epoch + row) of each epoch, put back in the
    given order (on the device fn returns)."""
    positions = positions.cpu()
    epochs, rows = positions // per_epoch, positions % per_epoch
    out = None
    for e in epochs.unique().tolist():
        at = (epochs == e).nonzero()[:, 0]
        part = fn(e, rows[at])
        if out is None:
            out = part.new_empty((len(positions), *part.shape[1:]))
        out[at.to(part.device)] = part
    return out


def write_epoch(directory: Path, e: int, epoch: Epoch, labels: dict[str, torch.Tensor]) -> str:
    """Write one epoch's file atomically; returns its SHA-256 for relabel.json."""
    path = Path(directory) / epoch_file(e)
    save_tensors(path, {**epoch.tensors(), **labels})
    return sha256(path)


def read_info(directory: Path) -> dict:
    path = Path(directory) / INFO
    if not path.is_file():
        return {}
    return read_json(path, f"delete {directory} and run `ladd relabel` again")


def write_info(directory: Path, info: dict) -> None:
    write_json(Path(directory) / INFO, info)


def load_store(directory: Path, images: int, classes: int, images_sha256: str) -> RelabelStore:
    """Map and validate every stored epoch against relabel.json and the artifact."""
    directory = Path(directory)
    info = read_info(directory)
    redo = "run `ladd relabel` on the artifact again"
    if not info:
        raise ArtifactError(f"{directory} holds no {INFO}: {redo}")
    if isinstance(info, dict) and info.get("complete") is not True:
        files = info.get("files")
        raise ArtifactError(
            f"the relabel in {directory} stopped after {len(files) if isinstance(files, list) else 0} of {info.get('epochs')} epochs: "
            f"run `ladd relabel` again to resume it"
        )
    from ladd.artifact.manifest import check_relabel_info

    check_relabel_info(info, str(directory / INFO))  # every field read below, typed
    if info["images_sha256"] != images_sha256:
        raise ArtifactError(f"the relabel in {directory} was made for other images than the artifact's: {redo}")
    if info["samples"] != images or info["classes"] != classes:
        raise ArtifactError(
            f"{directory / INFO} counts {info['samples']} samples × {info['classes']} classes, "
            f"the artifact has {images} × {classes}: {redo}"
        )
    if len(info["files"]) != info["epochs"]:
        raise ArtifactError(f"{directory / INFO} lists {len(info['files'])} epoch files for {info['epochs']} epochs: {redo}")
    want = _expected(info)
    files = []
    for e, digest in enumerate(info["files"]):
        path = directory / epoch_file(e)
        if not path.is_file():
            raise ArtifactError(f"{path} is missing: the relabel is incomplete, {redo}")
        tensors = load_safetensors(path, digest, INFO, mapped=True)
        if set(tensors) != set(want):
            raise ArtifactError(f"{path} holds {sorted(tensors)}, expected {sorted(want)}")
        for name, (shape, dtype) in want.items():
            t = tensors[name]
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise ArtifactError(f"{path}: {name} is {t.dtype} {tuple(t.shape)}, expected {dtype} {shape}")
        _check_epoch(tensors, info, path)
        files.append(tensors)
    return RelabelStore(directory, info, tuple(files))


def _expected(info: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    n, c, k = info["samples"], info["classes"], info["top_k"]
    dtype = getattr(torch, info["dtype"])
    draws = -(-n // info["batch_size"]) if info["mix_per"] == "batch" else n
    want = {
        "order": ((n,), torch.int64),
        "crop": ((n, 4), torch.float32),
        "flip": ((n,), torch.bool),
        "mix_index": ((n,), torch.int64),
        "mix_lambda": ((draws,), torch.float32),
        "mix_box": ((draws, 4), torch.int16),
    }
    if k is None:
        want["labels"] = ((n, c), dtype)
    else:
        want["label_values"] = ((n, k), dtype)
        want["label_index"] = ((n, k), torch.int16)
    return want


def _check_epoch(t: dict[str, torch.Tensor], info: dict, path: Path) -> None:
    n, c = info["samples"], info["classes"]
    if not torch.equal(t["order"].sort().values, torch.arange(n)):
        raise ArtifactError(f"{path}: order is not a permutation of the {n} images")
    if (t["mix_index"] < 0).any() or (t["mix_index"] >= n).any():
        raise ArtifactError(f"{path}: mix_index points outside the {n} images")
    for name in ("crop", "mix_lambda", *(("labels",) if "labels" in t else ("label_values",))):
        if not torch.isfinite(t[name].float()).all():
            raise ArtifactError(f"{path}: {name} contain NaN or infinite values")
    crop = t["crop"]
    if (
        (crop < 0).any()
        or (crop[:, 2:] <= 0).any()
        or (crop[:, 0] + crop[:, 2] > 1 + 1e-6).any()
        or (crop[:, 1] + crop[:, 3] > 1 + 1e-6).any()
    ):
        raise ArtifactError(f"{path}: a crop box leaves the image")
    if "label_index" in t and ((t["label_index"] < 0).any() or (t["label_index"] >= c).any()):
        raise ArtifactError(f"{path}: label_index points outside the {c} classes")
