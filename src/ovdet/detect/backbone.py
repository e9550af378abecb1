"""Detector backbones: a small conv net for the shapes world, or any transformers backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ovdet.ops.conv import channels_last, run_folded


class ConvBackbone(nn.Module):
    """(B, 3, H, W) normalised pixels -> (B, C, H/8, W/8); conv + BatchNorm + ReLU blocks.

    Attributes:
        out_channels: C.
        stride: 8.
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 128)) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.body = nn.Sequential(
            *conv(3, c0),
            nn.MaxPool2d(2),
            *conv(c0, c1),
            nn.MaxPool2d(2),
            *conv(c1, c2),
            *conv(c2, c2),
            nn.MaxPool2d(2),
            *conv(c2, c3),
            *conv(c3, c3),
        )
        self.out_channels, self.stride = c3, 8

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return run_folded(self.body, channels_last(pixels)).contiguous()  # BatchNorm folded in eval
