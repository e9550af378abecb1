"""Renderer configurations of the shapes world beyond the classic cluttered scenes.

A `Style` says how objects are painted (fills), what lies behind them (backgrounds), whether
edges are anti-aliased, and which camera-like degradations follow (pixel noise, blur, a JPEG
round trip with chroma subsampling). Two are defined:

- `TRAIN`, what the caption split is drawn with (so what shapes-clip learns from): flat,
  gradient, textured and outlined fills on clutter, flat white / black / grey / colour,
  gradients, 1/f noise, dead leaves (the classic model of natural-image statistics), stripes
  and thin random strokes.
- `HELDOUT`, the style split: bordered and radially shaded fills on paper, graph-paper and
  block backgrounds, never used in training, so every table can show a claim out of
  distribution.

Painting uses each object's coverage as alpha, so anti-aliased edges blend; an object's mask is
where its painted alpha is at least 0.5, minus what later objects cover (modal, as COCO's).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

from ovdet.data.shapes.world import (
    COLOURS,
    Scene,
    ShapeObject,
    background,
    category_weights,
    modal_masks,
    object_mask,
    sample_objects,
)

Size = tuple[int, int]


@dataclass(frozen=True)
class Style:
    """Probabilities of each fill and background, and of each degradation."""

    name: str
    fills: dict[str, float]
    backgrounds: dict[str, float]
    antialias: float  # probability of 3x3 (HELDOUT: 4x4) samples per pixel at edges
    supersample: int
    blur: float
    jpeg: float
    jpeg_quality: tuple[int, int]
    noise: tuple[float, float] = (0.0, 8.0)  # pixel noise sigma range


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    names = list(table)
    p = np.array([table[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _grid(size: Size) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return xs, ys


def _muted(rng: np.random.Generator, lo: float = 60, hi: float = 190) -> np.ndarray:
    c = rng.uniform(lo, hi, 3)
    grey = rng.uniform(0.5, 0.9)
    return c * (1 - grey) + c.mean() * grey


def _two_tone(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """(H, W, 1) weights in [0, 1] -> (H, W, 3) blend of two random muted colours."""
    return _muted(rng, 20, 235) * (1 - t) + _muted(rng, 20, 235) * t


def _pink_noise(rng: np.random.Generator, size: Size, beta: float) -> np.ndarray:
    """(H, W) zero-mean unit-std noise with a 1/f^beta power spectrum."""
    h, w = size
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spectrum[0, 0] = 0
    n = np.fft.irfft2(spectrum, s=(h, w))
    return n / (n.std() + 1e-9)


def _flat(kind: str) -> Callable[[np.random.Generator, Size], np.ndarray]:
    def flat(rng: np.random.Generator, size: Size) -> np.ndarray:
        c = {
            "white": lambda: np.full(3, rng.uniform(225, 255)),
            "black": lambda: np.full(3, rng.uniform(0, 30)),
            "grey": lambda: np.full(3, rng.uniform(80, 175)),
            "colour": lambda: _muted(rng, 40, 220),
        }[kind]()
        return np.broadcast_to(c, (*size, 3)).astype(np.float64).copy()

    return flat


def bg_flat(rng: np.random.Generator, size: Size) -> np.ndarray:
    """White, black, grey or a muted colour."""
    return _flat(str(rng.choice(["white", "black", "grey", "colour"])))(rng, size)


def bg_gradient(rng: np.random.Generator, size: Size) -> np.ndarray:
    xs, ys = _grid(size)
    theta = rng.uniform(0, 2 * math.pi)
    t = (xs * math.cos(theta) + ys * math.sin(theta)) / max(size)
    t = ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    return _two_tone(rng, t)


def bg_noise(rng: np.random.Generator, size: Size) -> np.ndarray:
    """Photograph-like 1/f noise in two muted colours."""
    n = np.tanh(_pink_noise(rng, size, rng.uniform(1.6, 3.0)) * rng.uniform(0.5, 1.2))
    t = ((n + 1) / 2)[..., None]
    return _two_tone(rng, t)


def bg_leaves(rng: np.random.Generator, size: Size) -> np.ndarray:
    """Dead leaves: discs of power-law radii in muted colours, painted over each other."""
    h, w = size
    img = np.broadcast_to(_muted(rng), (h, w, 3)).copy()
    xs, ys = _grid(size)
    for _ in range(int(rng.integers(20, 80))):
        r = max(h, w) * 0.02 / rng.uniform(0.05, 1.0) ** 0.7
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        img[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = _muted(rng, 30, 220)
    return img


def bg_stripes(rng: np.random.Generator, size: Size) -> np.ndarray:
    xs, ys = _grid(size)
    theta, f = rng.uniform(0, math.pi), rng.uniform(0.2, 1.2)
    wave = np.sin(f * (xs * math.cos(theta) + ys * math.sin(theta)))
    if rng.random() < 0.4:  # checks
        wave = np.sign(wave * np.sin(f * (-xs * math.sin(theta) + ys * math.cos(theta))))
    return _muted(rng, 40, 220) + rng.uniform(15, 45) * wave[..., None]


def bg_lines(rng: np.random.Generator, size: Size) -> np.ndarray:
    """Thin straight strokes (cables, edges, pencil marks) at random angles, positions and
    lengths over a flat or two-tone base: sharp one- or two-pixel lines that are not objects."""
    h, w = size
    img = (bg_flat if rng.random() < 0.5 else bg_gradient)(rng, size)
    xs, ys = _grid(size)
    for _ in range(int(rng.integers(8, 50))):
        x0, y0 = rng.uniform(-0.2 * w, 1.2 * w), rng.uniform(-0.2 * h, 1.2 * h)
        theta, length = rng.uniform(0, math.pi), rng.uniform(0.2, 1.5) * max(h, w)
        dx, dy = math.cos(theta), math.sin(theta)
        along = np.clip((xs - x0) * dx + (ys - y0) * dy, 0, length)
        dist = np.hypot(xs - x0 - along * dx, ys - y0 - along * dy)
        cover = np.clip(rng.uniform(0.5, 1.2) + 0.5 - dist, 0, 1)[..., None]  # 1-2 px, soft edge
        img = img * (1 - cover) + _muted(rng, 20, 235) * cover
    return img


def bg_paper(rng: np.random.Generator, size: Size) -> np.ndarray:
    """HELDOUT: off-white paper with soft stains and fibres."""
    h, w = size
    tone = np.array([rng.uniform(225, 250), rng.uniform(215, 245), rng.uniform(195, 235)])
    img = tone + rng.uniform(4, 12) * _pink_noise(rng, size, 3.0)[..., None]
    for _ in range(int(rng.integers(5, 20))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        t = np.linspace(0, 1, 40)
        dx, dy = rng.normal(0, w * 0.08, 2)
        xi = np.clip((x0 + t * dx).astype(int), 0, w - 1)
        yi = np.clip((y0 + t * dy).astype(int), 0, h - 1)
        img[yi, xi] -= rng.uniform(10, 30)
    return img


def bg_grid(rng: np.random.Generator, size: Size) -> np.ndarray:
    """HELDOUT: graph paper, thin lines every few pixels."""
    xs, ys = _grid(size)
    step = rng.uniform(5, 14)
    img = np.broadcast_to(np.full(3, rng.uniform(225, 250)), (*size, 3)).copy()
    lines = (np.mod(xs, step) < 1) | (np.mod(ys, step) < 1)
    img[lines] = _muted(rng, 120, 200)
    return img


def bg_blocks(rng: np.random.Generator, size: Size) -> np.ndarray:
    """HELDOUT: axis-aligned muted rectangles over each other."""
    h, w = size
    img = np.broadcast_to(_muted(rng), (h, w, 3)).copy()
    for _ in range(int(rng.integers(4, 14))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 8, w // 2)), y0 + int(rng.integers(h // 8, h // 2))
        img[y0:y1, x0:x1] = _muted(rng, 30, 230)
    return img


BACKGROUNDS: dict[str, Callable[[np.random.Generator, Size], np.ndarray]] = {
    "clutter": background,
    "flat": bg_flat,
    "white": _flat("white"),
    "black": _flat("black"),
    "gradient": bg_gradient,
    "noise": bg_noise,
    "leaves": bg_leaves,
    "stripes": bg_stripes,
    "lines": bg_lines,
    "paper": bg_paper,
    "grid": bg_grid,
    "blocks": bg_blocks,
}


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """(H, W) bool eroded `steps` times by the 4-neighbourhood (outside the image is empty)."""
    out = mask.copy()
    for _ in range(steps):
        p = np.pad(out, 1)
        out = out & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return out


Paint = tuple[np.ndarray, np.ndarray]  # (H, W, 3) colours and (H, W) alpha


def _along(obj: ShapeObject, size: Size, theta: float) -> np.ndarray:
    """(H, W) position across the object along direction `theta`, about [-1, 1]."""
    xs, ys = _grid(size)
    return np.clip(
        ((xs - obj.centre[0]) * math.cos(theta) + (ys - obj.centre[1]) * math.sin(theta))
        / obj.radius,
        -1,
        1,
    )


def fill_flat(rng: np.random.Generator, obj: ShapeObject, c: np.ndarray, a: np.ndarray) -> Paint:
    shade = 1 + 0.12 * _along(obj, a.shape, rng.uniform(0, 2 * math.pi))
    return c * shade[..., None], a


def fill_gradient(
    rng: np.random.Generator, obj: ShapeObject, c: np.ndarray, a: np.ndarray
) -> Paint:
    shade = 1 + rng.uniform(0.15, 0.3) * _along(obj, a.shape, rng.uniform(0, 2 * math.pi))
    return c * shade[..., None], a


def fill_texture(rng: np.random.Generator, obj: ShapeObject, c: np.ndarray, a: np.ndarray) -> Paint:
    """Stripes, checks, dots or noise in lighter and darker tones of the colour."""
    xs, ys = _grid(a.shape)
    f = rng.uniform(0.6, 1.6)
    kind = rng.choice(["stripes", "checks", "dots", "noise"])
    if kind == "noise":
        pattern = np.tanh(rng.normal(size=a.shape))
    else:
        theta = rng.uniform(0, math.pi)
        u = xs * math.cos(theta) + ys * math.sin(theta)
        v = -xs * math.sin(theta) + ys * math.cos(theta)
        pattern = np.sign(np.sin(f * u))
        if kind == "checks":
            pattern = pattern * np.sign(np.sin(f * v))
        if kind == "dots":
            pattern = np.where(np.sin(f * u) * np.sin(f * v) > 0.5, 1.0, -0.3)
    return c * (1 + rng.uniform(0.2, 0.4) * pattern[..., None]), a


def fill_outline(rng: np.random.Generator, obj: ShapeObject, c: np.ndarray, a: np.ndarray) -> Paint:
    """Only a stroke along the boundary, 1 px to about a sixth of the radius wide."""
    width = int(rng.integers(1, max(2, int(obj.radius / 6) + 1) + 1))
    return c * np.ones((*a.shape, 1)), a * ~erode(a >= 0.5, width)


def fill_bordered(
    rng: np.random.Generator, obj: ShapeObject, c: np.ndarray, a: np.ndarray
) -> Paint:
    """HELDOUT: a flat fill inside a dark border (a cartoon's ink line)."""
    width = int(rng.integers(1, max(1, int(obj.radius / 8)) + 1))
    ink = c * rng.uniform(0.0, 0.4)
    inner = erode(a >= 0.5, width)
    return np.where(inner[..., None], c, ink), a


def fill_radial(rng: np.random.Generator, obj: ShapeObject, c: np.ndarray, a: np.ndarray) -> Paint:
    """HELDOUT: lit from a point inside the shape, darker towards the rim."""
    xs, ys = _grid(a.shape)
    lx = obj.centre[0] + rng.normal(0, 0.3) * obj.radius
    ly = obj.centre[1] + rng.normal(0, 0.3) * obj.radius
    d = np.sqrt((xs - lx) ** 2 + (ys - ly) ** 2) / obj.radius
    return c * (1.25 - 0.45 * np.clip(d, 0, 1.3))[..., None], a


FILLS: dict[str, Callable[[np.random.Generator, ShapeObject, np.ndarray, np.ndarray], Paint]] = {
    "flat": fill_flat,
    "gradient": fill_gradient,
    "texture": fill_texture,
    "outline": fill_outline,
    "bordered": fill_bordered,
    "radial": fill_radial,
}

TRAIN = Style(
    name="train",
    fills={"flat": 0.4, "gradient": 0.2, "texture": 0.2, "outline": 0.2},
    backgrounds={
        "clutter": 0.25,
        "flat": 0.25,
        "gradient": 0.1,
        "noise": 0.15,
        "leaves": 0.15,
        "stripes": 0.1,
        "lines": 0.1,
    },
    antialias=0.5,
    supersample=3,
    blur=0.2,
    jpeg=0.3,
    jpeg_quality=(25, 95),
)
HELDOUT = Style(
    name="heldout",
    fills={"bordered": 0.5, "radial": 0.5},
    backgrounds={"paper": 0.4, "grid": 0.3, "blocks": 0.3},
    antialias=1.0,
    supersample=4,
    blur=0.0,
    jpeg=0.5,
    jpeg_quality=(60, 90),
    noise=(0.0, 4.0),
)
CLEAN = replace(TRAIN, name="clean", blur=0.0, jpeg=0.0)  # TRAIN without blur and JPEG
STYLES = {s.name: s for s in (TRAIN, HELDOUT, CLEAN)}


def degrade(rng: np.random.Generator, img: np.ndarray, style: Style) -> np.ndarray:
    """(H, W, 3) float -> uint8 after pixel noise, maybe a blur and maybe a JPEG round trip."""
    img = img + rng.normal(0, rng.uniform(*style.noise), img.shape)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if rng.random() < style.blur:
        pil = Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1)))
        out = np.array(pil)
    if rng.random() < style.jpeg:
        out = jpeg(out, int(rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1)))
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 through PIL's JPEG encoder (4:2:0 chroma subsampling) and back."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def render_styled(
    rng: np.random.Generator,
    size: Size,
    style: Style,
    count: int,
    uniform: bool = True,
    radius_range: tuple[float, float] = (0.08, 0.5),
    background_name: str | None = None,
    fill: str | None = None,
) -> Scene:
    """A scene of up to `count` objects in `style`; `radius_range` relative to the short side.
    `background_name` / `fill` force one background / fill (the robustness measurements)."""
    side = min(size)
    img = BACKGROUNDS[background_name or _pick(rng, style.backgrounds)](rng, size)
    weights = category_weights(uniform)
    lo, hi = radius_range[0] * side, radius_range[1] * side
    objects: list[ShapeObject] = []
    for _ in range(10):
        objects, _ = sample_objects(rng, size, count, weights, (lo, hi), families=True)
        if objects:
            break
    ss = style.supersample if rng.random() < style.antialias else 1
    painted = []
    for k, obj in enumerate(objects):
        obj = objects[k] = replace(obj, fill=fill or _pick(rng, style.fills))
        c = np.array(COLOURS[obj.colour], dtype=np.float64) + rng.normal(0, 10, 3)
        colours, alpha = FILLS[obj.fill](rng, obj, c, object_mask(obj, size, ss).astype(np.float64))
        img = img * (1 - alpha[..., None]) + colours * alpha[..., None]
        painted.append(alpha >= 0.5)
    return Scene(degrade(rng, img, style), objects, modal_masks(painted))
