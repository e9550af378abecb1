"""Detector backbones: a small conv net for the shapes world, or any transformers backbone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


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
        return self.body(pixels)


class HFBackbone(nn.Module):
    """One feature map of a transformers backbone (e.g. `microsoft/resnet-50` stage 3, stride 16).

    Args:
        model: a transformers `AutoBackbone` model whose `out_features` names one stage.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        if len(model.out_features) != 1:
            raise ValueError(f"HFBackbone takes one output stage, got {model.out_features}")
        self.model = model
        self.out_channels = int(model.channels[0])
        self.stride = int(model.config.__dict__.get("stride", 0) or _stride_of(model))

    @classmethod
    def from_pretrained(cls, name_or_path: str, stage: str = "stage3") -> HFBackbone:
        from transformers import AutoBackbone

        from ovdet.models.registry import load_weights

        return load_weights(
            lambda t: cls(AutoBackbone.from_pretrained(t, out_features=[stage])),
            name_or_path,
            {},
            "backbone",
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).feature_maps[0]


def _stride_of(model: Any) -> int:
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        out = model(pixel_values=x).feature_maps[0]
    return 64 // out.shape[-1]
