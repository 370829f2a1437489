"""ResNet18: CIFAR-style (3×3 stem, no max-pool), as used for cross-architecture evaluation, and
the ImageNet stem of torchvision's resnet18 (`resnet18-imagenet`: 7×7/2 conv + 3×3/2 max-pool,
batch norm), the exact architecture ImageNet-pretrained weights need (`ladd.models.weights`)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ladd.models import MODELS
from ladd.models.layers import Classifier, GlobalAvgPool, norm2d


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), norm2d(norm, c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), norm2d(norm, c_out),
        )  # fmt: skip
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm2d(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(Classifier):
    """Stem conv3×3/64 → BasicBlocks [2,2,2,2] (64/128/256/512, strides 1/2/2/2) → global avg pool → Linear(512).

    Global average pooling (the reference hard-codes a 4×4 pool for 32 px) makes any resolution work
    without padding. Norm is instance norm (`GroupNorm(C, C)`) by default, BatchNorm for ResNet18-BN.
    `stem="imagenet"` is torchvision's stem (conv7×7/64 stride 2 padding 3 → norm → ReLU → max-pool
    3×3 stride 2 padding 1); the blocks, pool and head are the same in both, and so is every
    parameter's shape but the stem conv's.
    """

    def __init__(self, *, channels: int, num_classes: int, im_size: tuple[int, int], norm: str = "instancenorm", stem: str = "cifar"):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown ResNet stem {stem!r}; expected cifar or imagenet")
        imagenet = stem == "imagenet"
        first = nn.Conv2d(channels, 64, 7, 2, 3, bias=False) if imagenet else nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        layers: list[nn.Module] = [first, norm2d(norm, 64), nn.ReLU(inplace=True)]
        if imagenet:
            layers.append(nn.MaxPool2d(3, 2, 1))
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c_in, c_out, stride, norm), BasicBlock(c_out, c_out, 1, norm)]
            c_in = c_out
        layers += [GlobalAvgPool(), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


MODELS.register("resnet18")(ResNet18)
MODELS.register("resnet18-bn")(partial(ResNet18, norm="batchnorm"))
MODELS.register("resnet18-imagenet", aliases=("resnet18-bn-imagenet", "torchvision-resnet18"))(
    partial(ResNet18, norm="batchnorm", stem="imagenet")
)
