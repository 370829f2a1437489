"""Model registry: every architecture the toolkit trains or evaluates on, built by name.

Each model is a `layers.Classifier`: `embed(x)` gives the flattened features that feed the final
`classifier` (nn.Linear), and `forward(x) = classifier(embed(x))`. Names are matched after
normalization (case and `-_. ` ignored), so `ConvNet-D3`, `VGG-11` and `ResNet-18-BN` all resolve.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ladd.core.errors import ConfigError
from ladd.core.registry import Registry, modules

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", modules(__name__, "alexnet", "convnet", "resnet", "vgg", "vit"))

# every stage's default network, in the CLI and the configs alike: the quick preset's student
# (a width-64 ConvNet; --preset paper and `model="convnet"` give the papers' width 128)
DEFAULT_MODEL = "convnet-w64"

MIN_SIZE, MAX_SIZE = 8, 512


def build_model(name: str, *, channels: int, num_classes: int, im_size: tuple[int, int]) -> nn.Module:
    """Build `name` for inputs of shape channels × im_size and `num_classes` outputs."""
    builder = MODELS.get(name)
    im_size = tuple(im_size)
    if len(im_size) != 2 or not all(MIN_SIZE <= s <= MAX_SIZE for s in im_size):
        raise ConfigError(f"im_size must be (H, W) with each side in {MIN_SIZE}..{MAX_SIZE}, got {im_size}")
    if channels < 1 or num_classes < 1:
        raise ConfigError(f"channels and num_classes must be >= 1, got channels={channels}, num_classes={num_classes}")
    return builder(channels=channels, num_classes=num_classes, im_size=im_size)


__all__ = ["MODELS", "build_model"]
