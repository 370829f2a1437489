"""Pieces shared by the model families: the classifier contract, input padding and norm layers."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`forward(x) = classifier(embed(x))`: DM matches `embed` features and Grad-CAM needs the head apart."""

    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class GlobalAvgPool(nn.Module):
    """Mean over H×W, kept as N×C×1×1: `nn.AdaptiveAvgPool2d(1)` bit for bit on CPU, but its
    backward is deterministic on CUDA too (adaptive pooling's is not, so
    `torch.use_deterministic_algorithms` refuses it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def input_padding(im_size: tuple[int, int], multiple: int) -> tuple[nn.Module, tuple[int, int], tuple[int, int]]:
    """Zero-pad an input up to the next multiple of `multiple` on each side, centred.

    Generalizes the reference's MNIST trick (28 px gets padding 3 in the first conv, so it behaves
    like 32 px). Returns `(pre, (ph, pw), padded_size)`: the symmetric part `(ph, pw)` is meant to be
    added to the first conv's own padding, and `pre` is an `nn.ZeroPad2d` carrying the one extra
    bottom/right pixel when a difference is odd (else `nn.Identity`, so state-dict keys never change).
    """
    h, w = im_size
    dh, dw = -h % multiple, -w % multiple
    extra = (0, dw % 2, 0, dh % 2)
    pre = nn.ZeroPad2d(extra) if any(extra) else nn.Identity()
    return pre, (dh // 2, dw // 2), (h + dh, w + dw)


def norm2d(kind: str, channels: int, size: tuple[int, int] | None = None) -> nn.Module:
    """The reference's norms; `instancenorm` is `GroupNorm(C, C)` as in DC/MTT/GLaD (affine, no running stats)."""
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.LayerNorm([channels, *size])
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected instancenorm, batchnorm, layernorm or none")
