"""LIC (Sun et al., "Information Compensation: A Fix for Any-scale Dataset Distillation"):
key-sample selection → squeeze → information compensation → region relabel, each stage switchable
(`select`, `compensate`, `relabel`) for the Table 7 ablation (`ladd experiment lic-ablation`).

No official LIC code is public; defaults follow the paper's text (|T'_c| = 300, N = 4, M = 200)
and its authors' successor code LINs-lab/CIM@ea71377 condense/condense.py (AdamW lr 0.01 on a
pixel residual in [0, 1] units, no weight decay; DSA `crop_cutout_flip` shared by real and
synthetic images; features of an intermediate observer layer).

1. Selection: per class, a random candidate subset T'_c; score s_i = −CE(observer(x_i), y_i);
   keep the top N·IPC (without selection: N·IPC random images of the class).
2. Squeeze: groups of N (in score order) resized to 1/√N of each side and tiled √N × √N.
3. Compensation: learn Δx so the expanded tiles of x* + Δx match their originals in the observer's
   features under shared random augmentation (Eq. 8). Images are independent: each image's loss
   is its own mean squared feature error (Adam steps per pixel), so each class is a *unit*
   optimized on its own, with its own seed and checkpoint, as recover's units are.
4. Relabel: the observer's soft label of every tile (LADD dense labels with n = √N, R = 1/√N).

Under torchrun the classes go round-robin to the ranks (`dist.mine`) for scoring and
compensation and are gathered on every rank: the candidate draws come from one generator that
every rank runs through for all classes, so the images are one process's.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from ladd.augment.dsa import DSA, strategy_for
from ladd.core import dist
from ladd.core.errors import ConfigError
from ladd.core.runtime import generator
from ladd.core.limits import MAX_COUNT, MAX_PIXEL_LR, MAX_STEPS, MAX_VIEWS
from ladd.core.types import Dataset, ImageSet, normalize, quantize
from ladd.cost import flops
from ladd.data.stream import gather
from ladd.images import IMAGE_METHODS, ImageRequest
from ladd.images.observer import ObserverParams, features, layer_names, load_observer, observer_ce, region_cost, region_labels
from ladd.images.optimize import Optimized, optimize_images, run_units, unit_seed
from ladd.images.mosaic import expand, grid_side, squeeze


class LICParams(ObserverParams):
    select: bool = True  # stage 1: key-sample selection (else random real images)
    compensate: bool = True  # stage 3: information compensation (else the plain squeezed images)
    relabel: bool = True  # stage 4: region soft labels from the observer (else hard labels only)
    tiles: int = Field(4, ge=4, le=MAX_VIEWS)  # N originals per image, a square (paper: N = 4)
    candidates: int = Field(300, ge=1, le=MAX_COUNT)  # |T'_c| per class (paper / CIM --mipc 300)
    iterations: int = Field(200, ge=0, le=MAX_STEPS)  # M compensation steps (paper / CIM --niter 200)
    lr: float = Field(0.01, gt=0, le=MAX_PIXEL_LR)  # Adam (CIM: AdamW, weight decay off = Adam) on Δx in [0, 1] pixel units
    layer: str = "embed"  # observer layer whose features are matched (`embed`: the deepest)
    augment: str = "crop_cutout_flip"  # DSA ops shared by a tile and its original (CIM --dsa_strategy); flip dropped for digits
    checkpoint_every: int = Field(50, ge=1, le=MAX_STEPS)


def pick_per_class(dataset: Dataset, k: int, candidates: int | None, score, gen: torch.Generator) -> torch.Tensor:
    """C×k training indices: per class the k best-scoring of a random candidate subset (`score`
    maps indices to scores, higher is better), or k random images when `candidates` is None.
    Every rank draws every class's subset (one stream, as one process) and scores its own classes."""
    pools = []
    for c in range(dataset.num_classes):
        members = (dataset.train.labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        pool = members if candidates is None else members[:candidates]
        if len(pool) < k:
            what = (
                f"the {len(pool)} candidates"
                if candidates is not None and len(members) > candidates
                else f"the {len(members)} training images"
            )
            raise ConfigError(
                f"class {dataset.class_names[c]!r}: {what} are fewer than tiles × IPC = {k}: "
                f"raise candidates (at most {len(members)}) or lower --ipc or tiles"
            )
        pools.append(pool)
    if candidates is None:
        return torch.stack([pool[:k] for pool in pools])
    return torch.stack(
        dist.in_order(
            {c: pools[c][torch.sort(score(pools[c]), descending=True, stable=True).indices[:k]] for c in dist.mine(dataset.num_classes)},
            dataset.num_classes,
        )
    )


def compensation_loss(
    observer, layer: str, syn: torch.Tensor, originals: torch.Tensor, mean, std, dsa: DSA | None, gen: torch.Generator
) -> torch.Tensor:
    """Eq. 8: Σ_images mean ‖φ(A(expand(x* + Δx)_k)) − φ(A(x_k))‖² over its tiles k, with the same
    augmentation A for a tile and its original (one draw per image). Pixels in [0, 1]."""
    b, k = originals.shape[:2]
    n = math.isqrt(k)
    tiles = expand(syn, n).flatten(0, 1)
    real = originals.flatten(0, 1)
    tiles, real = normalize(tiles * 255, mean, std), normalize(real * 255, mean, std)
    if dsa is not None:
        params = dsa.sample(b, tuple(syn.shape[-2:]), gen).index(torch.arange(b).repeat_interleave(k))
        tiles, real = dsa.apply(tiles, params), dsa.apply(real, params)
    with torch.no_grad():
        target = features(observer, real, layer)
    err = F.mse_loss(features(observer, tiles, layer), target, reduction="none").view(b, -1).mean(1)
    return err.sum()


def ops_for(augment: str, dataset: str) -> DSA | None:
    ops = [op for op in augment.split("_") if op and (op != "flip" or "flip" in strategy_for(dataset))]
    return DSA("_".join(ops)) if ops else None


def compensate(
    observer,
    p: LICParams,
    syn0: torch.Tensor,
    originals: torch.Tensor,
    ipc: int,
    dataset: Dataset,
    seed: int,
    checkpoint_dir: Path | None,
    resume: bool,
    keep_float: bool,
) -> list[Optimized]:
    """Every class's compensated images (stored pixels), each class a unit (`run_units`: one
    rank's, checkpointed in `checkpoint_dir/class_NNNNN`)."""
    dsa = ops_for(p.augment, dataset.name)

    def one(c: int) -> Optimized:
        real = originals[c * ipc : (c + 1) * ipc]
        return optimize_images(
            syn0[c * ipc : (c + 1) * ipc],
            lambda it, syn, g: compensation_loss(observer, p.layer, syn, real, dataset.mean, dataset.std, dsa, g),
            iterations=p.iterations,
            lr=p.lr,
            seed=unit_seed(seed, c, "lic"),
            betas=(0.9, 0.999),
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / f"class_{c:05d}",
            resume=resume,
            every=p.checkpoint_every,
            description=f"LIC compensation class {c}",
        )

    return run_units(dataset.num_classes, one, lambda x: stored(x, keep_float))


def stored(x: torch.Tensor, keep_float: bool) -> torch.Tensor:
    """Images in [0, 1] → the pixels stored: 0..255, rounded to uint8 unless `keep_float`."""
    pixels = x.detach().clamp(0, 1).cpu() * 255
    return pixels if keep_float else quantize(pixels)


@IMAGE_METHODS.register("lic")
def lic_images(req: ImageRequest) -> ImageSet:
    p = LICParams(**req.params)
    ds, device = req.dataset, req.runtime.device
    n = grid_side(p.tiles, ds.shape)
    observer, provenance = load_observer(ds, p, req.runtime)
    if p.layer not in layer_names(observer):
        raise ConfigError(
            f"layer {p.layer!r} is not in the observer {p.observer_model}: valid layers are {', '.join(layer_names(observer))}"
        )
    gen = generator(req.seed)

    def score(idx):  # s_i = −CE(observer(x_i), y_i)
        return torch.cat(
            [
                -observer_ce(
                    observer, normalize(gather(ds.train.images, part).to(device), ds.mean, ds.std), ds.train.labels[part].to(device)
                ).cpu()
                for part in idx.split(512)
            ]
        )  # candidates scored 512 at a time

    idx, cost = flops.count(pick_per_class, ds, p.tiles * req.ipc, p.candidates if p.select else None, score, gen)
    cost = sum(dist.gather(cost))  # each rank scored its classes
    groups = idx.view(ds.num_classes * req.ipc, p.tiles)  # consecutive picks (score order) share an image
    labels = ds.train.labels[groups[:, 0]]
    originals = gather(ds.train.images, groups).to(device).float() / 255  # B×N×C×H×W in [0, 1]
    syn0 = squeeze(originals)
    info = {"observer": provenance, "tiles": p.tiles, "grid": n, "selected": groups.tolist()}
    if p.compensate and p.iterations > 0:
        t0, cpu0 = time.perf_counter(), time.process_time()
        units = compensate(observer, p, syn0, originals, req.ipc, ds, req.seed, req.checkpoint_dir, req.resume, req.float_images)
        cpu = sum(dist.gather(time.process_time() - cpu0))
        images = torch.cat([u.images for u in units])
        seconds = time.perf_counter() - t0
        cost += sum(u.flops for u in units)
        info["compensation"] = {
            "loss_first": sum(u.losses[0] for u in units),
            "loss_last": sum(u.losses[-1] for u in units),
            "iterations": p.iterations,
            "seconds": round(seconds, 3),
            "seconds_per_image": round(seconds / len(images), 5),
            "cpu_seconds_per_image": round(cpu / len(images), 5),
        }
    else:
        images = stored(syn0, req.float_images)
    regions = None
    if p.relabel:
        regions = region_labels(observer, images, ds.mean, ds.std, n)
        info["flops"] = region_cost(observer, ds.shape, provenance, regions.shape[0] * regions.shape[1])
    return ImageSet(images, labels, info, regions, flops=cost)
