"""CLIP2SAM's recognition branch: an FPN over the frozen CLIP's stages, a per-prompt RoI head
that embeds each region into CLIP's text space, the background-aware classifier, and the
geometric ensemble with frozen CLIP at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ovdet.ops.roi_align import roi_align


class ClipFPN(nn.Module):
    """(B, C_l, H_l, W_l) CLIP levels, finest first -> level i's (B, width, H_i, W_i) map: 1x1
    laterals, top-down nearest up-sampling and sums, 3x3 smoothing."""

    def __init__(self, level_channels: list[int], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in level_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in level_channels)

    def forward(self, levels: list[torch.Tensor], i: int) -> torch.Tensor:
        """Level i's map: the top-down path from the coarsest level down to i, smoothed once (the
        finer levels and the other levels' smoothing are not computed: the head pools one)."""
        x = self.lateral[-1](levels[-1])
        for k in range(len(levels) - 2, i - 1, -1):
            x = self.lateral[k](levels[k]) + F.interpolate(x, size=levels[k].shape[-2:])
        return self.smooth[i](x)


class RecognitionHead(nn.Module):
    """Each region -> a unit embedding in CLIP's text space: RoIAlign `pool` x `pool` on one FPN
    level inside its box, a 1x1 conv, the mean over the window, a linear map to `embed_dim`.

    Args:
        level_channels: C_l of the CLIP levels (finest first).
        level_strides: s_l of each level, in input pixels.
        width: the FPN's width.
        embed_dim: D, the width of CLIP's text embeddings.
        level: which FPN level is pooled.
        pool: the RoIAlign window side.
    """

    def __init__(
        self,
        level_channels: list[int],
        level_strides: list[int],
        width: int,
        embed_dim: int,
        level: int = 2,
        pool: int = 12,
    ) -> None:
        super().__init__()
        if not 0 <= level < len(level_channels):
            raise ValueError(f"level must be in 0..{len(level_channels) - 1}, got {level}")
        self.fpn = ClipFPN(level_channels, width)
        self.level, self.stride, self.pool = level, level_strides[level], pool
        self.conv = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(inplace=True))
        self.proj = nn.Linear(width, embed_dim)

    def forward(self, levels: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """CLIP levels of B images and B (n_i, 4) xyxy boxes in input pixels -> (sum n_i, D)."""
        feature = self.fpn(levels, self.level)
        pooled = roi_align(
            feature, boxes, self.pool, spatial_scale=1 / self.stride, sampling_ratio=2,
            aligned=True,
        )  # fmt: skip
        return F.normalize(self.proj(self.conv(pooled).mean((2, 3))), dim=-1)


def class_logits(embeddings: torch.Tensor, text: torch.Tensor, scale: float = 100.0):
    """(N, D) unit region embeddings, (C, D) text -> (N, 1 + C) logits, background first: the
    background is a zero vector, so its logit is always 0 (a learned threshold for the rest)."""
    cos = embeddings @ F.normalize(text.to(embeddings), dim=-1).t()
    return torch.cat([torch.zeros_like(cos[:, :1]), scale * cos], 1)


BACKGROUND_WEIGHT = 0.1  # the background class's weight in the recognition cross-entropy


def recognition_loss(
    logits: torch.Tensor, labels: torch.Tensor, background_weight: float = BACKGROUND_WEIGHT
) -> torch.Tensor:
    """Cross-entropy over background + C classes; `labels` (N,) are 0 for background, else class
    index + 1; the background class is weighted `background_weight`."""
    weight = torch.ones(logits.shape[1], device=logits.device)
    weight[0] = background_weight
    return F.cross_entropy(logits, labels, weight=weight)


def geometric_ensemble(
    head: torch.Tensor, clip: torch.Tensor, novel: torch.Tensor, base_weight: float = 0.9
) -> torch.Tensor:
    """(N, C) probabilities of the trained head `q` and of frozen CLIP `c`, (C,) bool novel mask
    -> q^a c^(1-a) per class, a = `base_weight` for base classes and 1 - `base_weight` for novel
    ones (the head knows base classes; CLIP generalises to the rest)."""
    a = torch.where(novel.to(head.device), 1 - base_weight, base_weight)
    return head.clamp(min=1e-12) ** a * clip.clamp(min=1e-12) ** (1 - a)
