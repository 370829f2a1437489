"""AlexNet as used for cross-architecture evaluation in DC/DSA/DM (a 32 px CIFAR variant)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ladd.models import MODELS
from ladd.models.layers import Classifier, input_padding, norm2d


class AlexNet(Classifier):
    """conv5×5 128 → pool → conv5×5 192 → pool → conv3×3 256/192/192 → pool → Linear; ReLU after convs.

    The input is zero-padded up to a multiple of 8 (the three pools), so 28 px runs as 32 px like the
    reference. `norm="batchnorm"` puts BatchNorm after each conv (AlexNet-BN).
    """

    def __init__(self, *, channels: int, num_classes: int, im_size: tuple[int, int], norm: str = "none"):
        super().__init__()
        self.pad, (ph, pw), (h, w) = input_padding(im_size, 8)
        specs = [(channels, 128, 5, (2 + ph, 2 + pw), True), (128, 192, 5, 2, True),
                 (192, 256, 3, 1, False), (256, 192, 3, 1, False), (192, 192, 3, 1, True)]  # fmt: skip
        layers: list[nn.Module] = []
        for c_in, c_out, k, padding, pool in specs:
            layers += [nn.Conv2d(c_in, c_out, k, padding=padding), norm2d(norm, c_out), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(192 * (h // 8) * (w // 8), num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.pad(x)).flatten(1)


MODELS.register("alexnet")(AlexNet)
MODELS.register("alexnet-bn")(partial(AlexNet, norm="batchnorm"))
