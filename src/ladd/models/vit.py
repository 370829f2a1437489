"""A small ViT for cross-architecture evaluation, sized as in GLaD."""

from __future__ import annotations

import torch
from torch import nn

from ladd.models import MODELS
from ladd.models.layers import Classifier, input_padding


@MODELS.register("vit", aliases=("vit-small",))
class ViT(Classifier):
    """Conv patch embedding (~8×8 tokens) + cls token + learned positions → pre-norm Transformer → cls → Linear.

    dim 512, 8 heads, MLP 512, dropout 0.1; depth 6 up to 64 px and 10 above (GLaD: 32 px depth 6 patch 4,
    128 px depth 10 patch 16). Patch p = round(side/8); the input is zero-padded up to a multiple of p.
    GLaD's copy has its LayerNorms commented out; we keep the standard pre-norm layers plus a final
    LayerNorm. cls/positions start from N(0, 1) as in GLaD (vit-pytorch).
    """

    def __init__(self, *, channels: int, num_classes: int, im_size: tuple[int, int]):
        super().__init__()
        dim = 512
        side = min(im_size)
        p = max(1, round(side / 8))
        self.pad, (ph, pw), (h, w) = input_padding(im_size, p)
        self.patch = nn.Conv2d(channels, dim, p, stride=p, padding=(ph, pw))  # conv padding == centred zero pad
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (h // p) * (w // p) + 1, dim))
        self.dropout = nn.Dropout(0.1)

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(dim, 8, dim_feedforward=512, dropout=0.1, activation="gelu",
                                              batch_first=True, norm_first=True)  # fmt: skip

        depth = 6 if side <= 64 else 10
        self.encoder = nn.TransformerEncoder(layer(), depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        # The constructor deep-copies one layer, so all would start identical: draw each afresh.
        self.encoder.layers = nn.ModuleList(layer() for _ in range(depth))
        self.classifier = nn.Linear(dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(self.pad(x)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], 1)
        return self.encoder(self.dropout(tokens + self.pos))[:, 0]
