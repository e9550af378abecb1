"""Each shape as a family: proportions drawn per object, so a model learns the concept and not one
template. `sample_params(name, rng)` draws a parameter tuple and `family_inside(name, params)` is
the shape's set in local coordinates (u, v), scaled to fit the unit disc, as `draw.SHAPES`.

Ranges stay inside each name's meaning: a diamond is never as wide as a square (half-width <=
0.8 of its height), a trapezoid's top is never its bottom (<= 0.7) nor a point (>= 0.25), an
ellipse never a circle (axis ratio <= 0.72), a ring's hole never closes (inner radius >= 0.3).
An empty tuple is the canonical shape of `draw.SHAPES` (what the classic world draws).
"""

from __future__ import annotations

import math

import numpy as np

from ovdet.data.shapes.draw import SHAPES, Inside, polygon_inside

# name -> ((low, high), ...) of the parameters, each drawn uniformly
RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "circle": ((0.9, 1.0),),  # radius
    "ellipse": ((0.3, 0.72),),  # minor / major axis
    "ring": ((0.3, 0.72),),  # inner / outer radius
    "semicircle": ((0.8, 1.2),),  # height stretch
    "crescent": ((0.7, 0.92), (0.08, 0.35)),  # inner disc's radius, its offset beyond tangency
    "heart": ((0.85, 1.2), (0.85, 1.15)),  # x and y stretch
    "square": ((0.0, 0.35),),  # corner rounding, relative to the half-side
    "triangle": ((0.75, 1.0), (1.25, 1.8), (-0.35, 0.35)),  # base half-width, height, apex shift
    "pentagon": ((0.88, 1.12),),  # x stretch
    "hexagon": ((0.88, 1.12),),
    "star": ((0.32, 0.6),),  # inner / outer radius
    "cross": ((0.18, 0.4),),  # arm half-thickness
    "diamond": ((0.38, 0.8),),  # half-width (half-height 1)
    "arrow": ((0.12, 0.32), (0.45, 0.85), (-0.2, 0.45)),  # shaft, head half-widths; head x
    "trapezoid": ((0.25, 0.7), (0.4, 0.7)),  # top / bottom half-width, half-height
    "bolt": ((-0.08, 0.08),) * 4,  # jitter of four of its vertices
}
assert set(RANGES) == set(SHAPES)


def sample_params(name: str, rng: np.random.Generator) -> tuple[float, ...]:
    """One draw of `name`'s parameters."""
    return tuple(float(rng.uniform(lo, hi)) for lo, hi in RANGES[name])


def _fit(poly: np.ndarray) -> np.ndarray:
    """Centre a polygon's bounding box on the origin and scale it into the unit disc."""
    poly = poly - (poly.min(0) + poly.max(0)) / 2
    return poly / np.linalg.norm(poly, axis=1).max()


def _regular(n: int, stretch: float, start: float) -> np.ndarray:
    t = start + np.arange(n) * 2 * math.pi / n
    return _fit(np.stack([stretch * np.cos(t), np.sin(t)], 1))


def _polygon(name: str, p: tuple[float, ...]) -> np.ndarray:
    if name == "triangle":
        w, h, shift = p
        return _fit(np.array([[shift * w, -h / 2], [w, h / 2], [-w, h / 2]]))
    if name == "pentagon":
        return _regular(5, p[0], -math.pi / 2)
    if name == "hexagon":
        return _regular(6, p[0], 0.0)
    if name == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, p[0])
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if name == "cross":
        a = p[0]
        return _fit(
            np.array(
                [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a]]
                + [[a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]]
            )
        )
    if name == "diamond":
        return np.array([[0.0, -1.0], [p[0], 0.0], [0.0, 1.0], [-p[0], 0.0]])
    if name == "arrow":
        shaft, head, x = p
        return _fit(
            np.array(
                [[-1, -shaft], [x, -shaft], [x, -head], [1, 0], [x, head], [x, shaft], [-1, shaft]]
            )
        )
    if name == "trapezoid":
        top, h = p
        return _fit(np.array([[-top, -h], [top, -h], [1, h], [-1, h]]))
    if name == "bolt":
        j = np.zeros((7, 2))
        j[[1, 2, 4, 5], 0] = p
        base = np.array(
            [[0.15, -1.0], [-0.55, 0.1], [-0.05, 0.1], [-0.3, 1.0], [0.55, -0.2], [0.05, -0.2]]
            + [[0.35, -1.0]]
        )
        return _fit(base + j)
    raise KeyError(name)


def _square(rounding: float) -> Inside:
    s = 0.72
    r = rounding * s

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du = np.maximum(np.abs(u) - (s - r), 0)
        dv = np.maximum(np.abs(v) - (s - r), 0)
        return (np.abs(u) <= s) & (np.abs(v) <= s) & (du**2 + dv**2 <= r**2 + 1e-12)

    return inside


def _heart(sx: float, sy: float) -> Inside:
    m = max(sx, sy, 1.0)  # stretched, then shrunk back into the unit disc

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        x, y = u * 1.25 * m / sx, -v * 1.25 * m / sy + 0.25
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0

    return inside


def family_inside(name: str, params: tuple[float, ...]) -> Inside:
    """The set of shape `name` with `params` (empty: the canonical `draw.SHAPES[name]`)."""
    if not params:
        return SHAPES[name]
    p = params
    if name == "circle":
        return lambda u, v: u**2 + v**2 <= p[0] ** 2
    if name == "ellipse":
        return lambda u, v: u**2 + (v / p[0]) ** 2 <= 1
    if name == "ring":
        return lambda u, v: (u**2 + v**2 <= 0.95**2) & (u**2 + v**2 >= (0.95 * p[0]) ** 2)
    if name == "semicircle":
        h = min(1.0, p[0])
        w = h / p[0]  # the stretched half disc stays inside the unit disc

        def semi(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            y = (v + 0.45 * h) / h
            return ((u / w) ** 2 + y**2 <= 0.95**2) & (y >= 0)

        return semi
    if name == "crescent":
        ri, beyond = p
        d = 0.95 * (1 - ri) + beyond  # the inner disc always cuts the rim: never a ring
        return lambda u, v: (u**2 + v**2 <= 0.95**2) & ((u - d) ** 2 + v**2 > (0.95 * ri) ** 2)
    if name == "heart":
        return _heart(*p)
    if name == "square":
        return _square(p[0])
    return polygon_inside(_polygon(name, p))
