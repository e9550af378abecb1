"""Point prompts from text: "x,y; x,y" or JSON [[x, y], ...] -> (N, 2) xy in image pixels."""

from __future__ import annotations

import json
import math

import torch

from ovdet.errors import BoxError, FormatError


def parse_points(text: str) -> torch.Tensor:
    """ "x,y; x,y" or a JSON list of [x, y] -> (N, 2) float32; `FormatError` naming the first bad
    entry (not two finite numbers), or an empty list."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as e:
            raise FormatError(f"points are not valid JSON: {e}") from None
    else:
        rows = []
        for part in (p for p in stripped.split(";") if p.strip()):
            try:
                rows.append([float(v) for v in part.split(",")])
            except ValueError:
                raise FormatError(f'points must be "x,y; x,y", got {part.strip()[:40]!r}') from None
    if not isinstance(rows, list) or not rows:
        raise FormatError(f"expected a non-empty list of points, got {text[:60]!r}")
    for i, row in enumerate(rows):
        ok = isinstance(row, list) and len(row) == 2
        if not ok or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in row
        ):
            raise FormatError(f"point {i} must be two finite numbers x,y, got {str(row)[:40]}")
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 2)


def check_points(xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, 2) points -> the same, or `BoxError` naming the first outside the (H, W) image."""
    h, w = image_size
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= w) | (xy[:, 1] < 0) | (xy[:, 1] >= h)
    if outside.any():
        i = int(outside.nonzero()[0, 0])
        raise BoxError(f"point {i} {xy[i].tolist()} lies outside the {w}x{h} image")
    return xy
