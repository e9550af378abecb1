"""Box geometry in plain torch. Boxes are (N, 4) tensors; the format is in each function's name."""

from __future__ import annotations

import torch

from ovdet.errors import BoxError


def check_boxes(boxes: torch.Tensor, name: str = "boxes") -> torch.Tensor:
    """Return `boxes` as float (N, 4); raise `BoxError` on a wrong shape or non-finite values."""
    boxes = torch.as_tensor(boxes)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise BoxError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")
    if not torch.isfinite(boxes).all():
        rows = (~torch.isfinite(boxes)).any(1).nonzero()[:, 0].tolist()
        raise BoxError(f"{name} has NaN or infinite values in rows {rows[:10]}")
    return boxes


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x, y, width, height (COCO) -> (N, 4) x1, y1, x2, y2."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) x, y, width, height (COCO)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) centre x, centre y, width, height."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) centre x, centre y, width, height -> (N, 4) x1, y1, x2, y2."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) xyxy -> (N,) area; inverted or degenerate boxes have area 0."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4), (M, 4) xyxy -> (N, M) intersection over union.

    Inverted boxes count as empty; a pair whose union is empty has IoU 0 (not NaN).
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(a.dtype).tiny), 0.0)


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clamp (N, 4) xyxy boxes to an image of size (H, W)."""
    h, w = image_size
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], dim=-1)


def scale_boxes(boxes: torch.Tensor, sx: float, sy: float | None = None) -> torch.Tensor:
    """Multiply x coordinates of (N, 4) xyxy boxes by `sx` and y by `sy` (default `sx`)."""
    sy = sx if sy is None else sy
    return boxes * boxes.new_tensor([sx, sy, sx, sy])


def expand_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale (N, 4) xyxy boxes about their centres by `factor` (ViLD's 1.5x crops)."""
    cxcywh = xyxy_to_cxcywh(boxes)
    cxcywh[:, 2:] *= factor
    return cxcywh_to_xyxy(cxcywh)


def validate_input_boxes(
    boxes: torch.Tensor, image_size: tuple[int, int], min_size: float = 1.0
) -> torch.Tensor:
    """Check user-supplied (N, 4) xyxy boxes against an (H, W) image and clip them to it.

    Raises `BoxError` naming the first bad row for non-finite, inverted, smaller than `min_size`
    pixels, or entirely outside the image. Boxes partly outside are clipped to the image.
    """
    boxes = check_boxes(boxes)
    h, w = image_size
    x1, y1, x2, y2 = boxes.unbind(-1)
    clipped = clip_boxes(boxes, image_size)
    kept = (clipped[:, 2:] - clipped[:, :2]).min(1).values
    problems = (
        ((x2 < x1) | (y2 < y1), "is inverted (x2 < x1 or y2 < y1)"),
        (((x2 - x1) < min_size) | ((y2 - y1) < min_size), f"is smaller than {min_size} pixel"),
        ((x1 >= w) | (y1 >= h) | (x2 <= 0) | (y2 <= 0), f"lies outside the {w}x{h} image"),
        (kept < min_size, f"keeps less than {min_size} pixel inside the {w}x{h} image"),
    )
    for bad, why in problems:
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise BoxError(f"box {i} {boxes[i].tolist()} {why}")
    return clipped
