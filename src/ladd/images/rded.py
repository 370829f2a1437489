"""RDED (Sun et al., CVPR 2024; LINs-lab/RDED@3f6453d synthesize/): realistic and diverse patches,
no optimization.

Per class: `candidates` random real images (`--mipc`, 300); `crops` (`--num_crop`, 5) random
resized square crops of each (RandomResizedCrop: area U(0.08, 1) of the image, ratio 1:1), resized
to 1/√N of each side; each patch is scored by the observer's cross-entropy on the patch zero-padded
(centred) to full size; the best patch of each image is kept, then the N·IPC lowest-CE patches,
and image j is tiled from patches j, IPC + j, 2·IPC + j, … (`mix_images`), so every image mixes
score ranks. Region soft labels come from the observer on each tile (RDED relabels online with the
observer; ladd stores them once, as LADD dense labels with n = √N, R = 1/√N).

Under torchrun every rank draws every class's candidates and crops (one generator, in class
order, as one process) and crops and scores only its classes (`dist.mine`); the classes' images
are gathered on every rank, so they are one process's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from ladd.core import dist
from ladd.core.errors import ConfigError
from ladd.core.runtime import generator
from ladd.core.limits import MAX_COUNT, MAX_VIEWS
from ladd.core.types import ImageSet, normalize, to_pixels
from ladd.cost import flops
from ladd.data.stream import gather
from ladd.images import IMAGE_METHODS, ImageRequest
from ladd.images.observer import ObserverParams, load_observer, observer_ce, region_cost, region_labels
from ladd.images.mosaic import grid_side, shrink, tile


class RDEDParams(ObserverParams):
    tiles: int = Field(4, ge=4, le=MAX_VIEWS)  # N patches per image = factor² (RDED --factor 2 for ImageNet)
    candidates: int = Field(300, ge=1, le=MAX_COUNT)  # real images per class (--mipc 300)
    crops: int = Field(5, ge=1, le=MAX_COUNT)  # patches drawn per real image (--num_crop 5)
    scale_min: float = Field(0.08, gt=0, le=1)  # RandomResizedCrop area range (torchvision default)
    scale_max: float = Field(1.0, gt=0, le=1)
    relabel: bool = True  # region soft labels from the observer (else hard labels only)


def patch_boxes(b: int, crops: int, h: int, w: int, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """B×crops×3 (side, top, left) of square crops of a uniform area fraction at uniform positions:
    the draws, apart from the cropping, so every rank can make them for every class."""
    area = torch.empty(b, crops).uniform_(*scale, generator=gen) * h * w
    side = area.sqrt().round().clamp(1, min(h, w)).long()
    top = (torch.rand(b, crops, generator=gen) * (h - side + 1)).long()
    left = (torch.rand(b, crops, generator=gen) * (w - side + 1)).long()
    return torch.stack([side, top, left], -1)


def random_resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×C×H×W float and B×crops×3 `patch_boxes` → B×crops×C×size."""
    b, c = images.shape[:2]
    out = torch.empty(b, boxes.shape[1], c, *size, device=images.device)
    for i in range(b):
        for j, (s, y, x) in enumerate(boxes[i].tolist()):
            out[i, j] = shrink(images[i : i + 1, :, y : y + s, x : x + s], size)[0]
    return out


def zero_pad(patches: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Normalized patches centred on a zero (= mean colour) canvas of full size, as RDED scores them."""
    h, w = patches.shape[-2:]
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    return F.pad(patches, (left, size[1] - w - left, top, size[0] - h - top))


@IMAGE_METHODS.register("rded")
def rded_images(req: ImageRequest) -> ImageSet:
    p = RDEDParams(**req.params)
    if p.scale_min > p.scale_max:
        raise ConfigError(f"scale_min {p.scale_min} is above scale_max {p.scale_max}")
    ds, device = req.dataset, req.runtime.device
    c, h, w = ds.shape
    n = grid_side(p.tiles, ds.shape)
    observer, provenance = load_observer(ds, p, req.runtime)
    gen = generator(req.seed)
    k = p.tiles * req.ipc

    draws = []  # every class's candidates and crops, from the one generator in class order (as one process)
    for cls in range(ds.num_classes):
        members = (ds.train.labels == cls).nonzero().flatten()
        pool = members[torch.randperm(len(members), generator=gen)[: p.candidates]]
        if len(pool) < k:
            raise ConfigError(
                f"class {ds.class_names[cls]!r}: {len(pool)} candidate images are fewer than tiles × IPC = {k}: "
                f"raise candidates (at most {len(members)}) or lower --ipc or tiles"
            )
        draws.append((pool, patch_boxes(len(pool), p.crops, h, w, (p.scale_min, p.scale_max), gen)))

    def select(cls: int) -> tuple[torch.Tensor, float]:
        """The class's IPC images (pixels) and the mean CE of the patches they tile."""
        pool, boxes = draws[cls]
        x = normalize(gather(ds.train.images, pool).to(device), ds.mean, ds.std)
        patches = random_resized_crops(x, boxes, (h // n, w // n))
        y = torch.full((len(pool) * p.crops,), cls, device=device)
        ce = observer_ce(observer, zero_pad(patches.flatten(0, 1), (h, w)), y).view(len(pool), p.crops).cpu()
        best_ce, best = ce.min(1)
        best_patches = patches[torch.arange(len(pool)), best.to(device)]
        order = torch.sort(best_ce, stable=True).indices[:k]
        chosen = best_patches[order.to(device)]  # k = N·IPC patches, lowest CE first
        images = tile(chosen.view(p.tiles, req.ipc, c, h // n, w // n).transpose(0, 1))
        return to_pixels(images, ds.mean, ds.std).cpu(), best_ce[order].mean().item()

    # each rank scores its classes; scoring is what making the images costs
    mine, scoring = flops.count(lambda: {cls: select(cls) for cls in dist.mine(ds.num_classes)})
    done, scoring = dist.in_order(mine, ds.num_classes), sum(dist.gather(scoring))
    pixels = torch.cat([images for images, _ in done])
    labels = torch.arange(ds.num_classes).repeat_interleave(req.ipc)
    scores = [score for _, score in done]
    info = {"observer": provenance, "tiles": p.tiles, "grid": n, "mean_patch_ce": [round(s, 6) for s in scores]}
    regions = None
    if p.relabel:
        regions = region_labels(observer, pixels, ds.mean, ds.std, n)
        info["flops"] = region_cost(observer, ds.shape, provenance, regions.shape[0] * regions.shape[1])
    return ImageSet(pixels, labels, info, regions, flops=scoring)
