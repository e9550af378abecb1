"""Binary masks <-> COCO run-length encoding (RLE), compatible with pycocotools.

COCO RLE flattens an (H, W) mask in column-major order and stores alternating run lengths,
starting with a run of zeros. The compressed string form writes each count (after the first two,
as a difference to the count two places back) in 5-bit groups offset by 48.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ovdet.errors import FormatError


def rle_encode(mask: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> {"size": [H, W], "counts": str} (compressed COCO RLE)."""
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {m.shape}")
    flat = m.astype(bool).flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle_to_string(counts)}


def rle_decode(rle: dict[str, Any]) -> torch.Tensor:
    """COCO RLE (compressed string or uncompressed list counts) -> (H, W) bool mask."""
    h, w = _rle_size(rle)
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = rle_from_string(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise FormatError(f"RLE counts sum to {int(counts.sum())}, expected {h}*{w}={h * w}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return torch.from_numpy(flat.reshape(w, h).T.copy())


def masks_to_boxes(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, 4) xyxy boxes enclosing each mask's pixels (zeros if empty)."""
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks).bool()
    if m.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {tuple(m.shape)}")
    n, h, w = m.shape
    rows, cols = m.any(2), m.any(1)  # (N, H), (N, W)
    ys, xs = torch.arange(h, device=m.device), torch.arange(w, device=m.device)
    big = torch.iinfo(torch.int64).max
    x1 = torch.where(cols, xs, big).min(1).values
    y1 = torch.where(rows, ys, big).min(1).values
    x2 = torch.where(cols, xs + 1, 0).max(1).values
    y2 = torch.where(rows, ys + 1, 0).max(1).values
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(cols.any(1)[:, None], boxes, torch.zeros_like(boxes))


def point_region_boxes(masks: torch.Tensor, points: torch.Tensor, half: float) -> torch.Tensor:
    """(N, H, W) masks made from (N, 2) xy points -> (N, 4) xyxy: each mask's box, or for an
    empty mask a box of side 2 * `half` around its point (clamped at 0)."""
    xyxy = masks_to_boxes(masks)
    points = points.to(xyxy)  # on the masks' device
    empty = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
    around = torch.cat([points - half, points + half], 1).clamp(min=0)
    return torch.where(empty[:, None], around, xyxy)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, H, W) and (N, H, W) bool masks -> (N,) IoU (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def interior_points(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, 2) xy pixel centres deep inside each: the mask is eroded (3x3)
    until one more erosion would empty it, and the middle pixel of what is left is taken (an
    empty mask gives its image centre)."""
    import torch.nn.functional as F

    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
    if m.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {tuple(m.shape)}")
    points = []
    for mask in m.bool():
        x = mask.float()[None, None]
        while x.sum() > 0 and (eroded := -F.max_pool2d(-x, 3, 1, 1)).sum() > 0:
            x = eroded
        ys, xs = x[0, 0].nonzero(as_tuple=True)
        if len(xs) == 0:
            points.append([mask.shape[1] / 2, mask.shape[0] / 2])
        else:
            k = len(xs) // 2
            points.append([float(xs[k]) + 0.5, float(ys[k]) + 0.5])
    return torch.tensor(points, dtype=torch.float32).reshape(-1, 2)


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of a COCO RLE."""
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = rle_from_string(counts)
    return int(sum(counts[1::2]))


def rle_to_string(counts: list[int]) -> str:
    """Uncompressed run lengths -> COCO's compressed counts string."""
    out = []
    for i, value in enumerate(counts):
        x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_from_string(s: str | bytes) -> list[int]:
    """COCO's compressed counts string -> uncompressed run lengths."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise FormatError(f"truncated RLE string at character {p}")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                raise FormatError(f"invalid RLE character {s[p]!r} at position {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _rle_size(rle: Any) -> tuple[int, int]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise FormatError(f"an RLE must be a dict with 'size' and 'counts', got {str(rle)[:80]}")
    size = rle["size"]
    if len(size) != 2 or min(size) < 0:
        raise FormatError(f"RLE size must be [H, W], got {size}")
    return int(size[0]), int(size[1])


def polygons_to_mask(polygons: list[list[float]], h: int, w: int) -> torch.Tensor:
    """COCO polygons (each [x1, y1, x2, y2, ...] in pixels) -> (h, w) bool mask, their union.

    Rasterised by PIL (a pixel is in when its centre is inside, up to PIL's edge rule)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        if len(poly) < 6 or len(poly) % 2:
            raise FormatError(f"a polygon needs >= 3 (x, y) pairs, got {len(poly)} numbers")
        points = zip(poly[::2], poly[1::2], strict=True)
        draw.polygon([(float(x), float(y)) for x, y in points], fill=1)
    return torch.from_numpy(np.array(canvas, dtype=bool))


def annotation_mask(segmentation: Any, h: int, w: int) -> torch.Tensor:
    """A COCO annotation's "segmentation" (polygons, or RLE compressed or not) -> (h, w) bool."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, h, w)
    if isinstance(segmentation, dict):
        mask = rle_decode(segmentation)
        if tuple(mask.shape) != (h, w):
            raise FormatError(f"an RLE of size {tuple(mask.shape)} on a {h}x{w} image")
        return mask
    raise FormatError(f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def paste_masks(
    probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], threshold: float = 0.5
) -> torch.Tensor:
    """(N, M, M) mask probabilities over their boxes, (N, 4) xyxy boxes in an (H, W) image ->
    (N, H, W) bool masks: each grid resized bilinearly into its box (pixel centres sampled,
    Mask R-CNN's paste), thresholded; nothing outside the box."""
    import torch.nn.functional as F

    h, w = size
    out = torch.zeros(len(probs), h, w, dtype=torch.bool, device=probs.device)
    for i, (p, box) in enumerate(zip(probs, boxes, strict=True)):
        x1, y1, x2, y2 = box.tolist()
        c0, r0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        c1, r1 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
        if c1 <= c0 or r1 <= r0 or x2 <= x1 or y2 <= y1:
            continue
        xs = (torch.arange(c0, c1, device=p.device) + 0.5 - x1) / (x2 - x1) * 2 - 1
        ys = (torch.arange(r0, r1, device=p.device) + 0.5 - y1) / (y2 - y1) * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy], -1)[None].to(p.dtype)
        window = F.grid_sample(p[None, None], grid, align_corners=False, padding_mode="zeros")
        out[i, r0:r1, c0:c1] = window[0, 0] >= threshold
    return out
