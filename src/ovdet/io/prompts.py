"""Prompts from text: points "x,y; x,y" or JSON [[x, y], ...] -> (N, 2) xy, and boxes
"x1,y1,x2,y2; ..." or JSON [[x1, y1, x2, y2], ...] -> (N, 4) xyxy, in image pixels."""

from __future__ import annotations

import json
import math

import torch

from ovdet.errors import BoxError, FormatError


def parse_points(text: str) -> torch.Tensor:
    """ "x,y; x,y" or a JSON list of [x, y] -> (N, 2) float32; `FormatError` naming the first bad
    entry (not two finite numbers), or an empty list."""
    return parse_rows(text, 2, "point", "x,y")


def parse_boxes(text: str) -> torch.Tensor:
    """ "x1,y1,x2,y2; ..." or a JSON list of [x1, y1, x2, y2] -> (N, 4) float32 xyxy; errors as
    `parse_points`."""
    return parse_rows(text, 4, "box", "x1,y1,x2,y2")


def looks_inline(text: str) -> bool:
    """Whether a prompt argument is given inline (a JSON list, or comma-separated numbers) rather
    than as a file name (call it for text that names no existing file)."""
    stripped = text.strip()
    if stripped.startswith("["):
        return True
    return "," in stripped and "/" not in stripped and not stripped.endswith((".json", ".txt"))


def parse_rows(text: str, width: int, what: str, form: str) -> torch.Tensor:
    """ "a,b; a,b" or a JSON list of `width`-number lists -> (N, width) float32; `FormatError`
    naming the first bad entry (not `width` finite numbers), or an empty list."""
    plural = "boxes" if what == "box" else f"{what}s"
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as e:
            raise FormatError(f"{plural} are not valid JSON: {e}") from None
    else:
        rows = []
        for part in (p for p in stripped.split(";") if p.strip()):
            try:
                rows.append([float(v) for v in part.split(",")])
            except ValueError:
                raise FormatError(
                    f'{plural} must be "{form}; {form}", got {part.strip()[:40]!r}'
                ) from None
    return check_rows(rows, width, what, form, got=repr(text[:60]))


def check_rows(rows: object, width: int, what: str, form: str, got: str | None = None):
    """A non-empty list of `width`-number lists -> (N, width) float32; `FormatError` naming the
    first bad row (`got` shows the input in the empty-list message; default: the rows)."""
    plural = "boxes" if what == "box" else f"{what}s"
    count = {2: "two", 4: "four"}.get(width, str(width))
    if not isinstance(rows, list) or not rows:
        shown = got if got is not None else str(rows)[:60]
        raise FormatError(f"expected a non-empty list of {plural}, got {shown}")
    for i, row in enumerate(rows):
        ok = isinstance(row, list) and len(row) == width
        if not ok or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in row
        ):
            raise FormatError(
                f"{what} {i} must be {count} finite numbers {form}, got {str(row)[:60]}"
            )
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, width)


def check_points(xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, 2) points -> the same, or `BoxError` naming the first outside the (H, W) image."""
    h, w = image_size
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= w) | (xy[:, 1] < 0) | (xy[:, 1] >= h)
    if outside.any():
        i = int(outside.nonzero()[0, 0])
        raise BoxError(f"point {i} {xy[i].tolist()} lies outside the {w}x{h} image")
    return xy
