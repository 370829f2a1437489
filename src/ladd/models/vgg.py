"""VGG11 as used for cross-architecture evaluation in DC/DSA/MTT/GLaD (a 32 px CIFAR variant)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ladd.models import MODELS
from ladd.models.layers import Classifier, input_padding, norm2d

_CFG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(Classifier):
    """VGG11 features (conv3×3 → norm → ReLU, five max-pools) → flatten → Linear(512·h·w).

    The input is zero-padded up to a multiple of 2**min(5, ⌊log2 side⌋) so each pool that fits halves
    exactly (28 px runs as 32 px, like the reference). Inputs too small for five pools (8 px) skip a
    pool once the map is 1 px instead of failing. Norm is instance norm by default (VGG11-BN: BatchNorm).
    """

    def __init__(self, *, channels: int, num_classes: int, im_size: tuple[int, int], norm: str = "instancenorm"):
        super().__init__()
        pools = min(_CFG11.count("M"), int(math.log2(min(im_size))))
        self.pad, (ph, pw), (h, w) = input_padding(im_size, 2**pools)
        layers: list[nn.Module] = []
        c_in, padding = channels, (1 + ph, 1 + pw)
        for v in _CFG11:
            if v != "M":
                layers += [nn.Conv2d(c_in, v, 3, padding=padding), norm2d(norm, v), nn.ReLU(inplace=True)]
                c_in, padding = v, 1
            elif min(h, w) > 1:
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512 * h * w, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.pad(x)).flatten(1)


MODELS.register("vgg11")(VGG11)
MODELS.register("vgg11-bn")(partial(VGG11, norm="batchnorm"))
