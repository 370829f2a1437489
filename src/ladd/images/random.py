"""Random real images: IPC per class drawn without replacement (the coreset baseline LADD's
quick default labels)."""

from __future__ import annotations

import torch

from ladd.core.runtime import generator
from ladd.core.types import ImageSet
from ladd.images import IMAGE_METHODS, ImageRequest, check_ipc


@IMAGE_METHODS.register("random", aliases=("random-real", "real"))
def random_images(req: ImageRequest) -> ImageSet:
    check_ipc(req.dataset, req.ipc)
    gen = generator(req.seed)
    labels = req.dataset.train.labels
    picks = []
    for c in range(req.dataset.num_classes):
        members = (labels == c).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[: req.ipc]])
    return req.dataset.train.subset(torch.cat(picks))
