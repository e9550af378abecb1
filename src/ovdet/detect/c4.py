"""The C4 form of a two-stage detector (Faster R-CNN's original; object-centric-ovd's RKD uses
it): the RPN and RoIAlign read one stride-16 map, the output of a convolutional backbone's third
stage (C4), and the fourth stage (res5) is the RoI head: 14x14 RoIAlign on C4, res5 (stride 2:
7x7), average pooling, then the region embedding and class-agnostic box deltas.

Works with transformers backbones whose stages are `encoder.stages` after a stem (`embedder` or
`embeddings`): ResNet and ConvNeXt. The backbone's frozen BatchNorm and frozen early stages carry
over; res5 trains with the heads.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ovdet.errors import ConfigError
from ovdet.ops.levels import Features, pooled_regions


class C4Backbone(nn.Module):
    """(B, 3, H, W) pixels -> (B, C, H / 16, W / 16): the stem and the first three stages of a
    transformers conv backbone. `res5` is the fourth stage, kept out of this module (the RoI
    head owns it).

    Attributes:
        out_channels: C. stride: 16. res5: the fourth stage. res5_channels: its output width.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        stem = getattr(model, "embedder", None) or getattr(model, "embeddings", None)
        stages = getattr(getattr(model, "encoder", None), "stages", None)
        if stem is None or stages is None or len(stages) != 4:
            raise ConfigError(
                f"--neck c4 needs a convolutional backbone of 4 stages (ResNet, ConvNeXt); "
                f"a {model.config.model_type!r} backbone is not one: use --neck fpn"
            )
        self.stem, self.stages = stem, nn.ModuleList(list(stages)[:3])
        self.res5 = [stages[3]]  # a list: not a submodule of the backbone
        self.config = model.config
        with torch.no_grad():
            probe = self.stages[2](
                self.stages[1](self.stages[0](self.stem(torch.zeros(1, 3, 64, 64))))
            )
            out = stages[3](probe)
        self.out_channels, self.stride = probe.shape[1], 16
        self.res5_channels = out.shape[1]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stem(pixels)
        for stage in self.stages:
            x = stage(x)
        return x


class Res5RoIHead(nn.Module):
    """C4 features and per-image boxes -> (N, D) embeddings and (N, 4) box deltas through res5.

    Args:
        res5: the backbone's fourth stage (copied, so two heads do not share weights).
        channels: res5's output width.
        embed_dim: D.
    """

    def __init__(self, res5: nn.Module, channels: int, embed_dim: int, stride: int = 16) -> None:
        super().__init__()
        self.res5 = copy.deepcopy(res5)
        self.strides, self.pool = [stride], 14
        self.embed = nn.Linear(channels, embed_dim)
        self.box = nn.Linear(channels, 4)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.box.bias)

    def hidden(self, features: Features, boxes: list[torch.Tensor]) -> torch.Tensor:
        """(N, channels): RoIAlign 14x14, res5, the spatial mean."""
        x = self.res5(pooled_regions(features, self.strides, boxes, self.pool))
        return x.mean((2, 3))

    def forward(
        self, features: Features, boxes: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.hidden(features, boxes)
        return self.embed(x), self.box(x)
