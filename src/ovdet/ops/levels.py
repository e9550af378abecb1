"""Detector features as one map (the shapes world's ConvBackbone) or a pyramid (FPN), and the
RoIAlign that reads either.

`Features` is a (B, C, H, W) tensor or a list of them, finest first. Code that only passes
features along never looks inside; what does (the RPN, the RoI heads, the frozen-feature memo)
goes through these helpers, so the one-map path stays exactly what it was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ovdet.ops.exportable import exporting, graph_roi_align
from ovdet.ops.roi_align import roi_align

Features = torch.Tensor | list[torch.Tensor]


def as_levels(features: Features) -> list[torch.Tensor]:
    """The maps of `features`, finest first."""
    return list(features) if isinstance(features, list | tuple) else [features]


def device_of(features: Features) -> torch.device:
    return as_levels(features)[0].device


def image_of(features: Features, i: int) -> Features:
    """Image i's features, without the batch dimension (per level for a pyramid)."""
    if isinstance(features, list | tuple):
        return [f[i] for f in features]
    return features[i]


def stack_images(per_image: Sequence[Features]) -> Features:
    """Inverse of `image_of` over a batch."""
    if isinstance(per_image[0], list | tuple):
        return [torch.stack([f[k] for f in per_image]) for k in range(len(per_image[0]))]
    return torch.stack(list(per_image))


def roi_levels(
    boxes: torch.Tensor, strides: Sequence[int], canonical: float = 224.0, canonical_level: int = 4
) -> torch.Tensor:
    """(N, 4) xyxy -> (N,) index into `strides` by the FPN rule k = floor(k0 + log2(sqrt(wh) /
    224)), clamped to the levels there are (k is log2 of the stride: P2 has stride 4)."""
    lo, hi = int(math.log2(strides[0])), int(math.log2(strides[-1]))
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    scale = (wh[:, 0] * wh[:, 1]).sqrt()
    k = torch.floor(canonical_level + torch.log2(scale / canonical + 1e-8))
    return k.clamp(lo, hi).long() - lo


def pooled_regions(
    features: Features,
    strides: Sequence[int],
    boxes: list[torch.Tensor],
    pool: int,
    sampling_ratio: int = 2,
) -> torch.Tensor:
    """(N, C, pool, pool) RoIAlign features of every image's boxes (images in order), each box
    read from its level (one map: that map). `strides` are the maps' strides; with a pyramid,
    only as many leading maps as `strides` lists are read (P6 serves the RPN alone)."""
    levels = as_levels(features)
    if exporting():
        return _graph_pooled(levels, strides, boxes, pool, sampling_ratio)
    if len(levels) == 1:
        return roi_align(levels[0], boxes, pool, 1.0 / strides[0], sampling_ratio, aligned=True)
    rois = torch.cat(
        [
            torch.cat([torch.full((len(b), 1), float(i), device=b.device, dtype=b.dtype), b], 1)
            for i, b in enumerate(boxes)
        ]
    )
    level = roi_levels(rois[:, 1:], strides)
    out = rois.new_zeros(len(rois), levels[0].shape[1], pool, pool, dtype=levels[0].dtype)
    for k, stride in enumerate(strides):
        rows = (level == k).nonzero()[:, 0]
        if len(rows):
            out[rows] = roi_align(
                levels[k], rois[rows], pool, 1.0 / stride, sampling_ratio, aligned=True
            )
    return out


def _graph_pooled(
    levels: list[torch.Tensor],
    strides: Sequence[int],
    boxes: list[torch.Tensor],
    pool: int,
    sampling_ratio: int,
) -> torch.Tensor:
    """`pooled_regions` as an ONNX graph: every box pooled from every level, the level its size
    picks selected (a trace cannot branch on how many boxes each level gets)."""
    rois = torch.cat(
        [torch.cat([torch.full_like(b[:, :1], float(i)), b], 1) for i, b in enumerate(boxes)]
    )
    pooled = [
        graph_roi_align(levels[k], rois, pool, 1.0 / stride, sampling_ratio, aligned=True)
        for k, stride in enumerate(strides)
    ]
    if len(pooled) == 1:
        return pooled[0]
    level = roi_levels(rois[:, 1:], strides)[:, None, None, None]
    out = torch.zeros_like(pooled[0])
    for k, part in enumerate(pooled):
        out = torch.where(level == k, part, out)
    return out
