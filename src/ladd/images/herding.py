"""Herding (Welling 2009): per class, greedily add the image that keeps the mean feature of the
selection closest to the class mean. Features are the `embed` of a trained expert, as DC's coreset
baselines use a ConvNet trained on the whole training set (the expert cache makes it free when the
labeler has the same config)."""

from __future__ import annotations

from dataclasses import replace

import torch
from pydantic import BaseModel, ConfigDict, Field

from ladd.core.limits import MAX_COUNT, MAX_SEED
from ladd.core.types import ImageSet, normalize
from ladd.cost import flops
from ladd.data.stream import gather
from ladd.experts import ExpertConfig, ensure_expert, load_expert, read_info
from ladd.images import IMAGE_METHODS, ImageRequest, check_ipc


class HerdingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    expert_epochs: int = Field(10, ge=1, le=MAX_COUNT)  # the feature extractor: an expert trained this long
    expert_seed: int = Field(0, ge=0, le=MAX_SEED)


def herd(features: torch.Tensor, k: int) -> list[int]:
    """Indices of k rows whose running mean tracks the mean of all rows most closely."""
    mu = features.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool)
    for step in range(1, k + 1):
        dist = ((mu - (total + features) / step) ** 2).sum(1)
        dist[~available] = float("inf")
        best = int(dist.argmin())
        chosen.append(best)
        available[best] = False
        total += features[best]
    return chosen


@IMAGE_METHODS.register("herding")
def herding_images(req: ImageRequest) -> ImageSet:
    check_ipc(req.dataset, req.ipc)
    p = HerdingParams(**req.params)
    ds = req.dataset
    cfg = ExpertConfig(model=req.model, epochs=p.expert_epochs, seed=p.expert_seed)
    directory, _ = ensure_expert(ds, cfg, None, req.runtime)
    expert, _ = load_expert(directory, p.expert_epochs, ds, req.runtime)

    @torch.no_grad()
    def pick() -> torch.Tensor:
        picks = []
        for c in range(ds.num_classes):
            members = (ds.train.labels == c).nonzero().flatten()
            feats = torch.cat(
                [  # a class is read 512 images at a time, never gathered whole
                    expert.embed(normalize(gather(ds.train.images, chunk).to(req.runtime.device), ds.mean, ds.std)).cpu()
                    for chunk in members.split(512)
                ]
            )
            picks.append(members[herd(feats, req.ipc)])
        return torch.cat(picks)

    chosen, embedding = flops.count(pick)
    # herding needs a trained feature extractor: its training is part of the cost (a labeler that
    # shares the cached expert counts it again, for the labels)
    trained = flops.training(expert, ds.shape, read_info(directory)["samples_seen"])
    return replace(ds.train.subset(chosen), flops=trained + embedding)
