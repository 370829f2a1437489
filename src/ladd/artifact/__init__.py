"""A distilled dataset on disk: one safetensors file per stored component + manifest.json.

    images.safetensors        uint8 N×C×H×W (float32 in 0..255 for learned images kept unquantized)
    labels.safetensors        int64 N (hard labels)
    soft_labels.safetensors   float N×C      (optional: the labeler's global soft labels)
    dense_labels.safetensors  float N×N²×C   (optional: LADD's dense labels)
    relabel/                  (optional: stored FKD-style augmentations + soft labels, `relabel.py`)
    manifest.json             schema, provenance, config, SHA-256 + shape + dtype of every file

Built in a hidden sibling directory and switched into place in one step (`core.io.replace_dir`),
under the artifact's lock; loading verifies hashes, shapes and that every label row is a
probability distribution. No pickle anywhere.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import ladd
from ladd.core import dist
from ladd.core.errors import ArtifactError
from ladd.core.io import (
    fsync,
    load_safetensors,
    lock,
    read_json,
    replace_dir,
    restore,
    save_tensors,
    sha256,
    staging_dir,
    sweep,
    write_json,
)
from ladd.core.types import PIXEL_DTYPES
from ladd.cost.storage import component_bytes
from ladd.artifact.relabel import RELABEL_DIR, RelabelStore, load_store

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    images: torch.Tensor
    labels: torch.Tensor
    manifest: dict = field(default_factory=dict)
    soft_labels: torch.Tensor | None = None
    dense_labels: torch.Tensor | None = None
    relabel: RelabelStore | None = None  # loaded from relabel/ when the manifest names one

    def components(self) -> dict[str, torch.Tensor]:
        names = ("images", "labels", "soft_labels", "dense_labels")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def geometry(self) -> tuple[int, float] | None:
        """(N, R) of the sub-sampler: from the labels, else the tile grid of squeezed images (LIC, RDED)."""
        sub = self.manifest.get("labels", {}).get("subsample")
        grid = (self.manifest.get("images", {}).get("learned") or {}).get("grid")
        if sub is None:
            return None if grid is None else (int(grid), 1.0 / int(grid))
        return int(sub["n"]), float(sub["r"])

    def with_labels(self, soft: torch.Tensor | None, dense: torch.Tensor | None, label_manifest: dict, flops: dict) -> "Artifact":
        """The artifact with the label stage's tensors, provenance and FLOPs (replacing earlier labels).
        The stored bytes a loaded artifact records are dropped: they were the old labels' (evaluation
        measures the new ones; saving records them again)."""
        manifest = {k: v for k, v in self.manifest.items() if k != "storage"} | {"labels": label_manifest, "flops": flops}
        return replace(self, soft_labels=soft, dense_labels=dense, manifest=manifest)


def check_distribution(t: torch.Tensor, name: str, tol: float = 1e-2, *, partial: bool = False) -> None:
    """Label rows must be finite, non-negative and sum to 1 (tolerance covers float16 storage);
    `partial` rows (top-k labels, zeroed without renormalizing) sum to at most 1."""
    t = t.float()
    if not torch.isfinite(t).all():
        raise ArtifactError(f"{name} contain NaN or infinite values")
    if (t < 0).any():
        raise ArtifactError(f"{name} contain negative probabilities (min {t.min().item():.3g})")
    excess = t.sum(-1) - 1
    dev = (excess.clamp_min(0) if partial else excess.abs()).max().item() if t.numel() else 0.0
    if dev > tol:
        raise ArtifactError(f"{name} are not normalized: a row sums to 1 ± {dev:.3g}")


def _check(art: Artifact, where: str) -> None:
    n = art.images.shape[0]
    if art.images.dtype not in PIXEL_DTYPES or art.images.ndim != 4:
        raise ArtifactError(f"{where}: images must be uint8 or float32 N×C×H×W, got {art.images.dtype} {tuple(art.images.shape)}")
    if art.images.dtype == torch.float32 and not (torch.isfinite(art.images).all() and 0 <= art.images.min() and art.images.max() <= 255):
        raise ArtifactError(f"{where}: float32 images must be finite pixel values in [0, 255]")
    partial = art.manifest.get("labels", {}).get("top_k") is not None
    classes = len(art.manifest.get("source", {}).get("class_names", [])) or int(art.labels.max()) + 1
    if art.labels.dtype != torch.int64 or art.labels.shape != (n,) or (n and (art.labels.min() < 0 or art.labels.max() >= classes)):
        raise ArtifactError(f"{where}: labels must be {n} class indices in [0, {classes})")
    if art.soft_labels is not None:
        if art.soft_labels.shape != (n, classes):
            raise ArtifactError(f"{where}: soft labels have shape {tuple(art.soft_labels.shape)}, expected ({n}, {classes})")
        check_distribution(art.soft_labels, f"{where}: soft labels", partial=partial)
    if art.dense_labels is not None:
        g = art.geometry
        want = (n, g[0] ** 2 if g else -1, classes)
        if tuple(art.dense_labels.shape) != want:
            raise ArtifactError(f"{where}: dense labels have shape {tuple(art.dense_labels.shape)}, expected {want} (N×N²×C)")
        check_distribution(art.dense_labels, f"{where}: dense labels", partial=partial)


def save_artifact(path: Path, art: Artifact) -> None:
    """Write crash-safely: build in a hidden sibling directory, then switch it into place in one
    step, so `path` always holds the old or the new artifact, whole (its relabel included).
    Under torchrun rank 0 writes and every rank returns once it is written."""
    path = Path(path)
    _check(art, str(path))
    dist.first(lambda: _save(path, art))


def _save(path: Path, art: Artifact) -> None:
    with lock(path):
        sweep(path)
        if path.exists() and not (path / MANIFEST).is_file() and (not path.is_dir() or any(path.iterdir())):
            raise ArtifactError(f"{path} exists and is not a ladd artifact: choose another --out (ladd replaces only artifacts)")
        tmp = staging_dir(path)
        try:
            _write(tmp, art)
            replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a relabel file into the new artifact (no copy of gigabytes; the old artifact keeps
    its own link until the switch), copying where the file system cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write(tmp: Path, art: Artifact) -> None:
    files = {}
    for name, t in art.components().items():
        fname = f"{name}.safetensors"
        save_tensors(tmp / fname, {name: t})
        files[fname] = {"sha256": sha256(tmp / fname), "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    manifest = {
        **art.manifest,
        "schema_version": SCHEMA_VERSION,
        "ladd_version": ladd.__version__,
        "files": files,
        "storage": component_bytes(art.components()),
    }
    if art.relabel is not None:  # the stored relabel travels with the artifact
        shutil.copytree(art.relabel.directory, tmp / RELABEL_DIR, copy_function=_link_or_copy)
        fsync(tmp / RELABEL_DIR)
    write_json(tmp / MANIFEST, manifest)


def load_artifact(path: Path, *, complete: bool = False) -> Artifact:
    """Load and verify: the manifest's schema (`artifact.manifest`), every file's SHA-256, shape and
    dtype against it, and the labels. `complete`: also require the provenance the CLI records (its
    commands read it); artifacts made through the Python API may record less."""
    path = Path(path)
    restore(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{path} is not a ladd artifact (no {MANIFEST}): create one with `ladd distill`")
    manifest = read_json(mpath, "the artifact is corrupt")
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version is not None and type(version) is not int:  # "1", 1.0 or true: no ladd writes those
        raise ArtifactError(
            f"{mpath} has schema version {version!r}, a {type(version).__name__} where an integer is expected "
            f"(this ladd reads {SCHEMA_VERSION}): the artifact is corrupt, make it again with this ladd"
        )
    if isinstance(manifest, dict) and version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{mpath} has schema version {version!r}; this ladd reads {SCHEMA_VERSION}: make the artifact again with this ladd"
        )
    from ladd.artifact.manifest import check_manifest

    check_manifest(manifest, str(mpath), complete=complete)  # every field ladd reads back, typed: one line naming a bad one
    art = Artifact(manifest=manifest, **_verified_tensors(path, manifest))
    if len(art.images) == 0:
        raise ArtifactError(f"{path} holds no images: the artifact is corrupt")
    _check(art, str(path))
    if "relabel" in manifest:
        classes = len(manifest["source"]["class_names"])
        store = load_store(path / RELABEL_DIR, len(art.images), classes, manifest["files"]["images.safetensors"]["sha256"])
        art = replace(art, relabel=store)
    return art


def _verified_tensors(path: Path, manifest: dict) -> dict[str, torch.Tensor]:
    tensors = {}
    for fname, meta in manifest["files"].items():
        fpath = path / fname
        if not fpath.is_file():
            raise ArtifactError(f"{fpath} is missing: the artifact is incomplete")
        name = fname.removesuffix(".safetensors")
        stored = load_safetensors(fpath, meta["sha256"], "its manifest", mapped=True)  # the ranks of a machine share the pages
        if list(stored) != [name]:
            raise ArtifactError(f"{fpath} holds the tensors {sorted(stored)}, expected only {name!r}: the artifact is corrupt")
        t = stored[name]
        if list(t.shape) != meta["shape"] or str(t.dtype).removeprefix("torch.") != meta["dtype"]:
            raise ArtifactError(f"{fpath} holds {t.dtype} {tuple(t.shape)}, but the manifest says {meta['dtype']} {meta['shape']}")
        tensors[name] = t
    if "images" not in tensors or "labels" not in tensors:
        raise ArtifactError(f"{path / MANIFEST} lists no images or labels file: the artifact is incomplete")
    return tensors


def describe(art: Artifact) -> list[str]:
    """What an artifact stores, one line each (`ladd info` prints them): format, source and images,
    each component's shape and bytes, label provenance, the stored relabel's settings and bytes."""
    m = art.manifest
    recipe = (m["images"].get("recipe") or {}).get("name")
    lines = [
        f"ladd {m['ladd_version']} · schema {m['schema_version']}",
        f"source {m['source']['dataset']} · {len(m['source']['class_names'])} classes · IPC {m['ipc']} · "
        f"images: {m['images']['method']}"
        + (f" (recipe {recipe})" if recipe else "")
        + (f" · made with {m['images']['flops']:.3g} FLOPs" if m["images"].get("flops") is not None else ""),
    ]
    for name, b in m["storage"].items():
        lines.append(f"  {name:<13} {str(m['files'][name + '.safetensors']['shape']):<22} {b['raw']:>10,} B raw  {b['zip']:>10,} B zip")
    if "labels" in m:
        lab = m["labels"]
        geometry = f" · N={lab['subsample']['n']} R={lab['subsample']['r']}" if "subsample" in lab else ""
        teacher = lab.get("labeler")
        made_by = (
            (
                f" · labeler {teacher['model']} epoch {teacher['epoch']:g}"
                + (f" × {teacher['ensemble']} experts" if teacher.get("ensemble", 1) > 1 else "")
                + f" (test acc {100 * teacher['test_acc']:.2f}%)"
            )
            if teacher
            else ""
        )
        if "observer" in lab:  # region labels of squeezed images (LIC, RDED)
            made_by = f" · observer {lab['observer']['model']} ({100 * lab['observer']['train_check_acc']:.1f}% on training images)"
        lines.append(f"labels: {lab['method']}{geometry}{made_by}")
    if "relabel" in m:
        rel = m["relabel"]
        top = f" top-{rel['top_k']}" if rel["top_k"] else ""
        lines.append(
            f"relabel: {rel['epochs']} epochs × {rel['samples']} samples · {rel['dtype']} {rel['kind']}{top} · "
            f"T {rel['temperature']:g} · "
            f"teacher {rel['teacher']['model']} epoch {rel['teacher']['epoch']:g} (test acc {100 * rel['teacher']['test_acc']:.2f}%)"
        )
        lines += [f"  {name:<13} {b['raw']:>10,} B raw  {b['zip']:>10,} B zip" for name, b in rel["storage"].items()]
        total = sum(b["raw"] for b in rel["storage"].values())
        lines.append(
            f"  {'total':<13} {total:>10,} B raw · label-to-image ratio {rel['label_to_image_ratio']:.2f} "
            f"(soft labels alone {rel['soft_label_to_image_ratio']:.2f}; LPLD Table 24)"
        )
    return lines
