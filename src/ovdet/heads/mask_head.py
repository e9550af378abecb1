"""Mask R-CNN's mask head, class-agnostic (open-vocabulary detectors predict one mask per box,
whatever the class): RoIAlign 14x14, four 3x3 convs, a 2x2 stride-2 transposed conv to 28x28, a
1x1 conv to one mask logit per pixel; trained with per-pixel binary cross-entropy on foreground
RoIs against the ground-truth mask cropped and resized to the RoI."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ovdet.ops.levels import Features, pooled_regions
from ovdet.ops.roi_align import roi_align


class MaskHead(nn.Module):
    """Features and per-image boxes -> (N, 2 * pool, 2 * pool) mask logits over each box.

    Args:
        in_channels: C of the features.
        strides: the strides of the maps RoIs are read from (one map: its stride).
        channels: the convs' width (Mask R-CNN: 256).
        pool: RoIAlign side (14; the masks are twice that).
    """

    def __init__(
        self, in_channels: int, strides: int | Sequence[int], channels: int = 256, pool: int = 14
    ) -> None:
        super().__init__()
        self.strides = [strides] if isinstance(strides, int) else list(strides)
        self.pool = pool
        layers: list[nn.Module] = []
        for k in range(4):
            layers += [nn.Conv2d(in_channels if k == 0 else channels, channels, 3, padding=1)]
            layers += [nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, 1, 1)
        for m in [*self.convs, self.up]:
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.logits.weight, std=0.001)
        nn.init.zeros_(self.logits.bias)

    @property
    def side(self) -> int:
        return 2 * self.pool

    def forward(self, features: Features, boxes: list[torch.Tensor]) -> torch.Tensor:
        x = pooled_regions(features, self.strides, boxes, self.pool)
        x = F.relu(self.up(self.convs(x)))
        return self.logits(x)[:, 0]


def mask_targets(masks: torch.Tensor, boxes: torch.Tensor, side: int) -> torch.Tensor:
    """(G, H, W) bool ground-truth masks of one image, (N, 5) rows (mask index, x1, y1, x2, y2)
    in the masks' pixels -> (N, side, side) float targets in {0, 1}: each mask cropped to its box
    and resized (RoIAlign, then thresholded at 0.5)."""
    if len(boxes) == 0:
        return masks.new_zeros(0, side, side, dtype=torch.float32)
    grid = roi_align(masks[:, None].float(), boxes, side, 1.0, sampling_ratio=2, aligned=True)
    return (grid[:, 0] >= 0.5).float()


def mask_loss(
    logits: torch.Tensor, masks: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
    matched: Sequence[torch.Tensor],
) -> torch.Tensor:  # fmt: skip
    """Mean per-pixel BCE of (N, M, M) logits of the foreground RoIs of every image (in order)
    against their ground truth: per image, (G, H, W) masks, (n, 4) RoI boxes and (n,) indices of
    the matched masks."""
    targets = []
    for m, b, idx in zip(masks, boxes, matched, strict=True):
        rows = torch.cat([idx[:, None].to(b), b], 1)
        targets.append(mask_targets(m.to(b.device), rows, logits.shape[-1]))
    if not targets or sum(len(t) for t in targets) == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, torch.cat(targets).to(logits))
