"""ConvNet, the standard distillation backbone (DC/DM/MTT/GLaD), and its depth/width/norm variants."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ladd.models import MODELS
from ladd.models.layers import Classifier, input_padding, norm2d

_ACTS = {"relu": nn.ReLU, "leakyrelu": partial(nn.LeakyReLU, 0.01), "sigmoid": nn.Sigmoid}
_POOLS = {"avgpool": nn.AvgPool2d, "maxpool": nn.MaxPool2d}


def default_depth(im_size: tuple[int, int]) -> int:
    """Depth that leaves a ~4×4 last map, as the field uses: 32 px → 3, 64 → 4, 128 → 5 (28 → 3, 8 → 1)."""
    return max(1, round(math.log2(min(im_size) / 4)))


class ConvNet(Classifier):
    """[conv3×3 → norm → act → pool] × depth → flatten → Linear, with no global pooling.

    The input is zero-padded up to a multiple of 2**depth (through the first conv's padding), so
    MNIST 28 px runs as 32 px exactly as in the reference. `depth=None` picks it from the resolution.
    """

    def __init__(
        self,
        *,
        channels: int,
        num_classes: int,
        im_size: tuple[int, int],
        width: int = 128,
        depth: int | None = None,
        norm: str = "instancenorm",
        act: str = "relu",
        pool: str = "avgpool",
    ):
        super().__init__()
        depth = default_depth(im_size) if depth is None else depth
        self.pad, (ph, pw), (h, w) = input_padding(im_size, 2**depth if pool != "none" else 1)
        layers: list[nn.Module] = []
        for i in range(depth):
            padding = (1 + ph, 1 + pw) if i == 0 else 1
            conv = nn.Conv2d(channels if i == 0 else width, width, 3, padding=padding)
            layers += [conv, norm2d(norm, width, (h, w)), _ACTS[act]()]
            if pool != "none":
                layers.append(_POOLS[pool](2, 2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * h * w, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.pad(x)).flatten(1)


MODELS.register("convnet")(ConvNet)
for _d in range(1, 7):
    MODELS.register(f"convnet-d{_d}", aliases=(f"convnet-{_d}",))(partial(ConvNet, depth=_d))
for _w in (32, 64, 256):
    MODELS.register(f"convnet-w{_w}")(partial(ConvNet, width=_w))
for _suffix, _norm in (("bn", "batchnorm"), ("ln", "layernorm"), ("nn", "none")):
    MODELS.register(f"convnet-{_suffix}")(partial(ConvNet, norm=_norm))
