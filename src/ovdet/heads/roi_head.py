"""RoI head: RoIAlign on a feature map, two fully connected layers, and two outputs: a region
embedding in the text space (ViLD's R(phi(I), r)) and class-agnostic box deltas."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ovdet.ops.levels import Features, pooled_regions


class RoIHead(nn.Module):
    """(B, C, H, W) features (or a pyramid of them) and per-image boxes -> (N, D) embeddings and
    (N, 4) box deltas.

    Args:
        in_channels: C.
        stride: feature pixels per image pixel is 1 / stride; with a pyramid, the strides of the
            levels RoIs are read from (each box from the level its size picks).
        embed_dim: D, the text embeddings' width.
        pool: RoIAlign output side.
        hidden: width of the fully connected layers.
    """

    def __init__(
        self,
        in_channels: int,
        stride: int | Sequence[int],
        embed_dim: int,
        pool: int = 7,
        hidden: int = 512,
    ):
        super().__init__()
        self.strides = [stride] if isinstance(stride, int) else list(stride)
        self.pool = pool
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Linear(hidden, embed_dim)
        self.box = nn.Linear(hidden, 4)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.box.bias)

    def hidden(self, features: Features, boxes: list[torch.Tensor]) -> torch.Tensor:
        """(N, hidden) features of the boxes after RoIAlign and the fully connected layers."""
        return self.fc(pooled_regions(features, self.strides, boxes, self.pool))

    def forward(
        self, features: Features, boxes: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.hidden(features, boxes)
        return self.embed(x), self.box(x)
