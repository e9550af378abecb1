"""Slow reference implementations, transcribed loop by loop, to test the vectorised ops."""

from __future__ import annotations

import math

import torch


def roi_align_reference(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Slow loop transcription of torchvision's CPU kernel; for tests only. rois: (K, 5)."""
    ph, pw = output_size
    _, c, h, w = input.shape
    out = torch.zeros(rois.shape[0], c, ph, pw, dtype=input.dtype)
    offset = 0.5 if aligned else 0.0
    for k, (bi, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        rw, rh = x2 * spatial_scale - offset - sx, y2 * spatial_scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / ph), 1)
        gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / pw), 1)
        for i in range(ph):
            for j in range(pw):
                acc = torch.zeros(c, dtype=input.dtype)
                for iy in range(gh):
                    yy = sy + i * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = sx + j * bw + (ix + 0.5) * bw / gw
                        acc += _bilinear_reference(input[int(bi)], yy, xx, h, w)
                out[k, :, i, j] = acc / (gh * gw)
    return out


def _bilinear_reference(f: torch.Tensor, y: float, x: float, h: int, w: int) -> torch.Tensor:
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(f.shape[0], dtype=f.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= h - 1:
        yh = yl = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xh = xl = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * f[:, yl, xl]
        + hy * lx * f[:, yl, xh]
        + ly * hx * f[:, yh, xl]
        + ly * lx * f[:, yh, xh]
    )


def iou_reference(a: list[float], b: list[float]) -> float:
    aw, ah = max(a[2] - a[0], 0), max(a[3] - a[1], 0)
    bw, bh = max(b[2] - b[0], 0), max(b[3] - b[1], 0)
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        if all(iou_reference(boxes[i].tolist(), boxes[j].tolist()) <= thr for j in keep):
            keep.append(i)
    return keep
