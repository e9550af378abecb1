"""SAM2CLIP's adapter: a frozen CLIP's multi-scale features -> SAM image embeddings.

The levels are a conv tower's stages (shapes-clip; the paper's RN50x16) or a ViT's patch tokens
after evenly spaced layers (a transformers CLIP, fed at SAM's side so its patch grid is SAM's).

Each CLIP level (B, C_l, S/s_l, S/s_l) is patch-embedded onto SAM's (g, g) grid (a conv whose
kernel = stride = s_g / s_l, or a transposed conv where the level is coarser than the grid), a
learned level embedding is added, the levels are summed, SAM's position embedding is added, then
a few SAM ViT blocks and SAM's neck give (B, C_sam, g, g): what SAM's image encoder would give.
The blocks, the neck and the position embedding start as copies of the teacher SAM's last ones.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ovdet.ops.conv import channels_last, run_folded


def clip_levels(tower: nn.Module, pixels: torch.Tensor) -> list[torch.Tensor]:
    """A CLIP tower's multi-scale features: (B, 3, S, S) normalised pixels -> (B, C_l, S/s_l,
    S/s_l) maps, finest first. A conv tower gives its stage outputs (before each pooling, then
    the last) in channels-last memory, which the adapter's convs take as they are (converting
    them back cost a quarter of the tower's time); a transformers ViT tower gives `vit_levels`."""
    if hasattr(tower, "embeddings") and hasattr(tower, "encoder"):  # CLIPVisionTransformer
        return vit_levels(tower, pixels)
    blocks = getattr(tower, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise TypeError(
            f"clip_levels needs a conv tower with a `blocks` Sequential (shapes-clip) or a "
            f"transformers CLIP ViT, got {type(tower).__name__}"
        )
    levels, x = [], channels_last(pixels)  # faster convs on CPU
    for block in blocks:
        if isinstance(block, nn.MaxPool2d):
            levels.append(x)
        x = run_folded(block, x) if isinstance(block, nn.Sequential) else block(x)
    return [*levels, x]


def vit_levels(vision: nn.Module, pixels: torch.Tensor, count: int = 4) -> list[torch.Tensor]:
    """A ViT tower's patch tokens after `count` evenly spaced layers, the last included (all at
    stride p, the patch size; SAM2CLIP's reading of a ViT CLIP): (B, 3, S, S) normalised pixels
    -> min(count, layers) maps (B, C, S/p, S/p). Position embeddings are interpolated when S is
    not the tower's native side."""
    b, _, h, w = pixels.shape
    p, native = int(vision.config.patch_size), int(vision.config.image_size)
    out = vision(
        pixel_values=pixels,
        output_hidden_states=True,
        interpolate_pos_encoding=(h, w) != (native, native),
    )
    layers = len(out.hidden_states) - 1  # hidden_states[0] is the embedding output
    count = min(count, layers)
    picks = [layers * (k + 1) // count for k in range(count)]
    return [
        out.hidden_states[i][:, 1:].transpose(1, 2).reshape(b, -1, h // p, w // p) for i in picks
    ]


class Sam2ClipAdapter(nn.Module):
    """(B, C_l, H_l, W_l) CLIP levels -> (B, C_sam, g, g) SAM image embeddings.

    Args:
        level_channels: C_l of each CLIP level, finest first.
        level_strides: s_l of each level, in input pixels.
        sam_vision: the teacher's `SamVisionEncoder` (its last `blocks` layers, neck and position
            embedding are copied as the starting point).
        blocks: SAM ViT blocks after the fusion.
    """

    def __init__(
        self,
        level_channels: list[int],
        level_strides: list[int],
        sam_vision: Any,
        blocks: int = 2,
    ) -> None:
        super().__init__()
        if len(level_channels) != len(level_strides):
            raise ValueError(f"{len(level_channels)} channels for {len(level_strides)} strides")
        cfg = sam_vision.config
        width, grid_stride = int(cfg.hidden_size), int(cfg.patch_size)
        self.width, self.grid_stride = width, grid_stride
        self.embed = nn.ModuleList(
            _patch_embed(c, width, s, grid_stride)
            for c, s in zip(level_channels, level_strides, strict=True)
        )
        self.level_embed = nn.Parameter(torch.zeros(len(level_channels), width))
        pos = sam_vision.pos_embed
        self.pos_embed = nn.Parameter(pos.detach().clone()) if pos is not None else None
        if not 1 <= blocks <= len(sam_vision.layers):
            raise ValueError(f"blocks must be in 1..{len(sam_vision.layers)}, got {blocks}")
        self.layers = nn.ModuleList(copy.deepcopy(sam_vision.layers[-blocks:]))
        self.neck = copy.deepcopy(sam_vision.neck)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        if len(levels) != len(self.embed):
            raise ValueError(f"expected {len(self.embed)} CLIP levels, got {len(levels)}")
        x = sum(
            embed(level) + self.level_embed[i][:, None, None]
            for i, (embed, level) in enumerate(zip(self.embed, levels, strict=True))
        )
        x = x.permute(0, 2, 3, 1)  # (B, g, g, width): SAM's blocks are channels-last
        if self.pos_embed is not None:
            if self.pos_embed.shape[1:3] != x.shape[1:3]:
                raise ValueError(
                    f"the CLIP levels give a {tuple(x.shape[1:3])} grid, SAM's is "
                    f"{tuple(self.pos_embed.shape[1:3])}: feed the side SAM was built for"
                )
            x = x + self.pos_embed
        for layer in self.layers:
            out = layer(x)
            x = out[0] if isinstance(out, tuple) else out
        return self.neck(x)


def _patch_embed(channels: int, width: int, stride: int, grid_stride: int) -> nn.Module:
    """A level at `stride` onto the grid at `grid_stride`: conv k = s = grid/stride when finer,
    transposed conv when coarser, 1x1 when equal."""
    if stride <= grid_stride:
        if grid_stride % stride:
            raise ValueError(f"level stride {stride} does not divide the grid's {grid_stride}")
        k = grid_stride // stride
        return nn.Conv2d(channels, width, k, stride=k)
    if stride % grid_stride:
        raise ValueError(f"the grid's stride {grid_stride} does not divide level stride {stride}")
    k = stride // grid_stride
    return nn.ConvTranspose2d(channels, width, k, stride=k)
