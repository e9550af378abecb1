"""The shapes world: categories, colours, long-tailed frequencies, and scene rendering.

A scene is a cluttered background (a two-colour gradient, pixel noise, distractor strokes and
dots in muted colours) with 1 to N coloured shapes, drawn in order so later shapes may occlude
earlier ones. Placement keeps at least `MIN_VISIBLE` of every object visible. Instance masks are
the visible pixels of each object (modal masks, as COCO's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ovdet.data.shapes.draw import SHAPES, coverage
from ovdet.data.shapes.families import family_inside, sample_params

# (name, frequency group, synonyms). frequent + common = base, rare = novel (as LVIS's r/c/f).
CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("circle", "f", ("disc",)),
    ("square", "f", ()),
    ("triangle", "f", ()),
    ("star", "f", ()),
    ("hexagon", "f", ()),
    ("cross", "f", ("plus sign",)),
    ("ellipse", "c", ("oval",)),
    ("diamond", "c", ("rhombus",)),
    ("pentagon", "c", ()),
    ("heart", "c", ()),
    ("arrow", "c", ()),
    ("crescent", "r", ("moon",)),
    ("ring", "r", ("donut",)),
    ("trapezoid", "r", ()),
    ("semicircle", "r", ("half circle",)),
    ("bolt", "r", ("lightning bolt",)),
)
assert {c[0] for c in CATEGORIES} == set(SHAPES)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 15),
    "yellow": (240, 220, 30),
    "green": (35, 165, 55),
    "cyan": (30, 205, 215),
    "blue": (35, 70, 215),
    "purple": (135, 50, 195),
    "pink": (245, 120, 185),
}

# Relative sampling weight of a category in the detection splits, by frequency group.
GROUP_WEIGHT = {"f": 1.0, "c": 0.3, "r": 0.06}
# each novel (rare) shape's fixed base partner in the companion caption scenes: a distracting
# co-occurrence like the paper's person with tennis racket (category names)
COMPANIONS = {
    "crescent": "star",
    "ring": "circle",
    "trapezoid": "square",
    "semicircle": "triangle",
    "bolt": "arrow",
}
MIN_VISIBLE = 0.6


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: category index, colour name, centre (x, y), radius, angle (rad),
    its family parameters (empty: the canonical shape) and how it is painted."""

    category: int
    colour: str
    centre: tuple[float, float]
    radius: float
    angle: float
    params: tuple[float, ...] = ()
    fill: str = "flat"

    @property
    def name(self) -> str:
        return CATEGORIES[self.category][0]


@dataclass
class Scene:
    """A rendered scene: (H, W, 3) uint8 image, its objects and their (H, W) visible masks."""

    image: np.ndarray
    objects: list[ShapeObject]
    masks: list[np.ndarray]


def category_weights(uniform: bool) -> np.ndarray:
    """(C,) sampling probabilities: uniform (the caption set) or long-tailed (detection sets)."""
    w = np.array([1.0 if uniform else GROUP_WEIGHT[g] for _, g, _ in CATEGORIES])
    return w / w.sum()


def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float cluttered background: muted gradient, faint texture, strokes and dots."""
    h, w = size
    a, b = rng.uniform(70, 185, 3), rng.uniform(70, 185, 3)
    grey = rng.uniform(0.5, 0.85)  # desaturate towards grey so object colours stand out
    a, b = a * (1 - grey) + a.mean() * grey, b * (1 - grey) + b.mean() * grey
    theta = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    t = np.clip((xs * math.cos(theta) + ys * math.sin(theta) + 1) / 2, 0, 1)[..., None]
    img = a * (1 - t) + b * t
    if rng.random() < 0.5:  # a faint periodic texture (stripes or checks)
        f, phase = rng.uniform(0.15, 0.6), rng.uniform(0, 2 * math.pi)
        wave = np.sin(f * np.mgrid[0:h, 0:w][int(rng.integers(2))] + phase)
        if rng.random() < 0.5:
            wave = wave * np.sin(f * np.mgrid[0:h, 0:w][1] + phase)
        img = img + rng.uniform(4, 12) * wave[..., None]
    for _ in range(rng.integers(2, 7)):  # thin strokes
        x0, y0, x1, y1 = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, h)
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xi = np.clip(np.linspace(x0, x1, n).astype(int), 0, w - 1)
        yi = np.clip(np.linspace(y0, y1, n).astype(int), 0, h - 1)
        img[yi, xi] = img[yi, xi] * 0.5 + rng.uniform(60, 190) * 0.5
    for _ in range(rng.integers(5, 20)):  # dots
        x, y = rng.integers(0, w), rng.integers(0, h)
        img[max(0, y - 1) : y + 1, max(0, x - 1) : x + 1] = rng.uniform(60, 190)
    return img


def sample_objects(
    rng: np.random.Generator,
    size: tuple[int, int],
    count: int,
    weights: np.ndarray,
    radius_range: tuple[float, float],
    tries: int = 30,
    families: bool = False,
    categories: list[int] | None = None,
) -> tuple[list[ShapeObject], list[np.ndarray]]:
    """Place up to `count` objects, each leaving every object at least MIN_VISIBLE visible.

    `families`: radii log-uniform and proportions drawn per object (`families.sample_params`);
    otherwise radii uniform and canonical shapes (the classic world's draws, unchanged).
    `categories`: object k is of category `categories[k]` (`count` of them) instead of drawn
    from `weights`."""
    h, w = size
    objects: list[ShapeObject] = []
    full: list[np.ndarray] = []  # each object's whole mask before occlusion
    lo, hi = radius_range
    log_lo, log_hi = math.log(lo), math.log(hi)
    for k in range(count):
        for _ in range(tries):
            r = math.exp(rng.uniform(log_lo, log_hi)) if families else rng.uniform(lo, hi)
            centre = (rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6))
            obj = ShapeObject(
                categories[k] if categories else int(rng.choice(len(CATEGORIES), p=weights)),
                str(rng.choice(list(COLOURS))),
                centre,
                r,
                float(rng.uniform(0, 2 * math.pi)),
            )
            if families:
                obj = replace(obj, params=sample_params(obj.name, rng))
            mask = object_mask(obj, size)
            if mask.sum() < 0.4 * (math.pi * r * r) * 0.5:  # mostly outside the image
                continue
            if all(_visible(m, [*full[i + 1 :], mask]) >= MIN_VISIBLE for i, m in enumerate(full)):
                objects.append(obj)
                full.append(mask)
                break
    return objects, modal_masks(full)


def modal_masks(drawn: list[np.ndarray]) -> list[np.ndarray]:
    """(H, W) bool masks in drawing order -> each minus everything drawn after it (modal)."""
    return [
        m & ~np.any(np.stack(drawn[i + 1 :]), 0) if i + 1 < len(drawn) else m
        for i, m in enumerate(drawn)
    ]


def object_mask(obj: ShapeObject, size: tuple[int, int], supersample: int = 1) -> np.ndarray:
    """(H, W) float32 coverage of `obj`'s whole shape (bool where `supersample` is 1)."""
    cov = coverage(
        family_inside(obj.name, obj.params), size, obj.centre, obj.radius, obj.angle, supersample
    )
    return cov > 0 if supersample == 1 else cov


def _visible(mask: np.ndarray, above: list[np.ndarray]) -> float:
    covered = np.any(np.stack(above), 0) if above else np.zeros_like(mask)
    return float((mask & ~covered).sum()) / max(1, int(mask.sum()))


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 128),
    max_objects: int = 4,
    uniform: bool = False,
    radius_range: tuple[float, float] | None = None,
    min_objects: int = 1,
    categories: list[int] | None = None,
) -> Scene:
    """Render one scene with `min_objects`..`max_objects` objects, or exactly the objects of
    `categories` where given (each placed if it fits)."""
    h, w = size
    radius_range = radius_range or (0.09 * min(h, w), 0.22 * min(h, w))
    img = background(rng, size)
    count = len(categories) if categories else int(rng.integers(min_objects, max_objects + 1))
    objects: list[ShapeObject] = []
    weights = category_weights(uniform)
    for _ in range(10):  # a scene always has at least one object
        objects, masks = sample_objects(
            rng, size, count, weights, radius_range, categories=categories
        )
        if objects:
            break
    for obj, mask in zip(objects, masks, strict=True):
        colour = np.array(COLOURS[obj.colour], dtype=np.float64) + rng.normal(0, 10, 3)
        shade = 1 + 0.12 * np.linspace(-1, 1, w) * math.cos(obj.angle)  # soft lighting, (W,)
        img[mask] = (colour * np.broadcast_to(shade[None, :, None], (h, w, 1)))[mask]
    img += rng.normal(0, 6, img.shape)
    return Scene(np.clip(np.round(img), 0, 255).astype(np.uint8), objects, masks)
