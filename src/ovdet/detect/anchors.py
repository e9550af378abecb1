"""Anchor boxes on a feature map: every location gets one box per (size, aspect ratio)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def cell_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> torch.Tensor:
    """(A, 4) xyxy anchors centred at the origin; ratio = height / width, area = size^2."""
    out = []
    for size in sizes:
        for ratio in ratios:
            w = size / ratio**0.5
            h = size * ratio**0.5
            out.append([-w / 2, -h / 2, w / 2, h / 2])
    return torch.tensor(out, dtype=torch.float32)


def grid_anchors(
    feature_size: tuple[int, int], stride: int, sizes: Sequence[float], ratios: Sequence[float]
) -> torch.Tensor:
    """(H * W * A, 4) xyxy anchors in image pixels, ordered (y, x, anchor); centres at
    ((x + 0.5) * stride, (y + 0.5) * stride)."""
    h, w = feature_size
    base = cell_anchors(sizes, ratios)  # (A, 4)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # (HW, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)
