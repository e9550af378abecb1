"""RoI head: RoIAlign on a feature map, two fully connected layers, and two outputs: a region
embedding in the text space (ViLD's R(phi(I), r)) and class-agnostic box deltas."""

from __future__ import annotations

import torch
from torch import nn

from ovdet.ops.roi_align import roi_align


class RoIHead(nn.Module):
    """(B, C, H, W) features and per-image boxes -> (N, D) embeddings and (N, 4) box deltas.

    Args:
        in_channels: C.
        stride: feature pixels per image pixel is 1 / stride.
        embed_dim: D, the text embeddings' width.
        pool: RoIAlign output side.
        hidden: width of the fully connected layers.
    """

    def __init__(
        self, in_channels: int, stride: int, embed_dim: int, pool: int = 7, hidden: int = 512
    ):
        super().__init__()
        self.stride, self.pool = stride, pool
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

    def hidden(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """(N, hidden) features of the boxes after RoIAlign and the fully connected layers."""
        pooled = roi_align(
            features, boxes, self.pool, 1.0 / self.stride, sampling_ratio=2, aligned=True
        )
        return self.fc(pooled)

    def forward(
        self, features: torch.Tensor, boxes: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.hidden(features, boxes)
        return self.embed(x), self.box(x)
