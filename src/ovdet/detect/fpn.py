"""Feature Pyramid Network (Lin et al., 2017) as Faster and Mask R-CNN use it, and the
pyramid backbone (a transformers backbone followed by an FPN).

Lateral 1x1 convs bring C2..C5 to `channels`; top-down, each coarser sum is upsampled x2
(nearest) and added; a 3x3 conv on each sum gives P2..P5; P6 is P5 max-pooled with kernel 1 and
stride 2 (for the RPN's largest anchors only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """Maps of strides s_i (doubling) -> P-levels of `channels` at the same strides, plus one
    level at twice the coarsest stride when `top_level`.

    Attributes:
        out_channels: `channels`.
        strides: the output levels' strides.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        channels: int = 256,
        top_level: bool = True,
    ) -> None:
        super().__init__()
        if any(b != 2 * a for a, b in zip(in_strides, in_strides[1:], strict=False)):
            raise ValueError(f"FPN inputs must double in stride, got strides {list(in_strides)}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels
        )
        for conv in [*self.lateral, *self.output]:  # detectron2's c2_xavier_fill
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.top_level = top_level
        self.out_channels = channels
        self.strides = list(in_strides) + ([2 * in_strides[-1]] if top_level else [])

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """C-maps, finest first -> P-maps, finest first."""
        inner = self.lateral[-1](maps[-1])
        outs = [self.output[-1](inner)]
        for k in range(len(maps) - 2, -1, -1):
            lateral = self.lateral[k](maps[k])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output[k](inner))
        if self.top_level:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs


class PyramidBackbone(nn.Module):
    """(B, 3, H, W) pixels -> a list of feature maps (finest first) with `strides` and
    `out_channels`: a transformers backbone, then an FPN."""

    def __init__(self, body: nn.Module, channels: int = 256) -> None:
        super().__init__()
        self.body = body
        self.neck = FPN(body.channels, body.strides, channels)
        self.out_channels, self.strides = channels, self.neck.strides
        self.roi_strides = list(body.strides)  # P2..P5; P6 serves the RPN alone

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.body(pixels))
