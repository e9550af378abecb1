"""Exact shape masks on the pixel grid. Every shape is a set in local coordinates (u, v), with the
shape inside the unit disc; a pixel belongs to an object when its centre, mapped into the
object's rotated and scaled frame, falls inside the set. The picture is painted from the same
masks, so masks are exact by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _regular(n: int, start: float = -math.pi / 2) -> np.ndarray:
    t = start + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], 1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-0.72, -0.72], [0.72, -0.72], [0.72, 0.72], [-0.72, 0.72]]),
    "triangle": _regular(3) * np.array([1.0, 1.0]) + np.array([0.0, 0.15]),
    "pentagon": _regular(5),
    "hexagon": _regular(6, 0.0),
    "star": _star(),
    "cross": np.array(
        [
            [-0.3, -0.95],
            [0.3, -0.95],
            [0.3, -0.3],
            [0.95, -0.3],
            [0.95, 0.3],
            [0.3, 0.3],
            [0.3, 0.95],
            [-0.3, 0.95],
            [-0.3, 0.3],
            [-0.95, 0.3],
            [-0.95, -0.3],
            [-0.3, -0.3],
        ]
    ),
    "diamond": np.array([[0.0, -1.0], [0.55, 0.0], [0.0, 1.0], [-0.55, 0.0]]),
    "arrow": np.array(
        [
            [-0.95, -0.25],
            [0.2, -0.25],
            [0.2, -0.7],
            [0.95, 0.0],
            [0.2, 0.7],
            [0.2, 0.25],
            [-0.95, 0.25],
        ]
    ),
    "trapezoid": np.array([[-0.45, -0.55], [0.45, -0.55], [0.95, 0.55], [-0.95, 0.55]]),
    "bolt": np.array(
        [
            [0.15, -1.0],
            [-0.55, 0.1],
            [-0.05, 0.1],
            [-0.3, 1.0],
            [0.55, -0.2],
            [0.05, -0.2],
            [0.35, -1.0],
        ]
    ),
}


def polygon_inside(poly: np.ndarray) -> Inside:
    """Crossing-number point-in-polygon test, vectorised over points."""

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        result = np.zeros(u.shape, dtype=bool)
        x1, y1 = poly[:, 0], poly[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        for a, b, c, d in zip(x1, y1, x2, y2, strict=True):
            crosses = (b > v) != (d > v)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = (c - a) * (v - b) / (d - b) + a
            result ^= crosses & (u < x_at)
        return result

    return inside


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = u * 1.25, -v * 1.25 + 0.25
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


IMPLICIT: dict[str, Inside] = {
    "circle": lambda u, v: u**2 + v**2 <= 0.85**2,
    "ellipse": lambda u, v: u**2 + (v / 0.5) ** 2 <= 1,
    "ring": lambda u, v: (u**2 + v**2 <= 0.9**2) & (u**2 + v**2 >= 0.5**2),
    "semicircle": lambda u, v: (u**2 + (v + 0.45) ** 2 <= 0.95**2) & (v >= -0.45),
    "crescent": lambda u, v: (u**2 + v**2 <= 0.9**2) & ((u - 0.45) ** 2 + v**2 > 0.75**2),
    "heart": _heart,
}

SHAPES: dict[str, Inside] = {**IMPLICIT, **{k: polygon_inside(p) for k, p in POLYGONS.items()}}


def shape_mask(
    shape: str, size: tuple[int, int], centre: tuple[float, float], radius: float, angle: float
) -> np.ndarray:
    """(H, W) bool mask of `shape` at (x, y) `centre`, `radius` pixels, rotated `angle` radians."""
    return coverage(SHAPES[shape], size, centre, radius, angle) > 0


def coverage(
    inside: Inside,
    size: tuple[int, int],
    centre: tuple[float, float],
    radius: float,
    angle: float,
    supersample: int = 1,
) -> np.ndarray:
    """(H, W) float32 fraction of each pixel inside the set, from `supersample`^2 samples per
    pixel (1: the pixel centre alone, so values are 0 or 1)."""
    h, w = size
    cx, cy = centre
    x0, x1 = max(0, int(cx - radius) - 1), min(w, int(cx + radius) + 2)
    y0, y1 = max(0, int(cy - radius) - 1), min(h, int(cy + radius) + 2)
    out = np.zeros((h, w), dtype=np.float32)
    if x0 >= x1 or y0 >= y1:
        return out
    k = supersample
    ys, xs = np.mgrid[y0 * k : y1 * k, x0 * k : x1 * k]
    dx, dy = ((xs + 0.5) / k - cx) / radius, ((ys + 0.5) / k - cy) / radius
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate the pixel into the shape's frame
    fine = inside(u, v).astype(np.float32)
    out[y0:y1, x0:x1] = fine.reshape(y1 - y0, k, x1 - x0, k).mean((1, 3))
    return out
