"""Shape families and the styled renderer: proportions stay inside each name's meaning, painted
pixels and masks agree, forced backgrounds and fills are what they say, JPEG is a real round
trip."""

import math
import re

import numpy as np
import pytest

from ovdet.data.shapes.draw import SHAPES, coverage
from ovdet.data.shapes.families import RANGES, family_inside, sample_params
from ovdet.data.shapes.style import (
    BACKGROUNDS,
    CLEAN,
    HELDOUT,
    TRAIN,
    erode,
    jpeg,
    render_styled,
)
from ovdet.data.shapes.world import COLOURS


def mask(name, params, size=96, angle=0.0):
    return coverage(
        family_inside(name, params), (size, size), (size / 2, size / 2), size / 2.2, angle
    )


def lo_hi(name):
    return tuple(r[0] for r in RANGES[name]), tuple(r[1] for r in RANGES[name])


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_draw_fits_the_unit_disc_and_is_not_empty(name):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96]
    outside = (xx + 0.5 - 48) ** 2 + (yy + 0.5 - 48) ** 2 > (96 / 2.2 * 1.06) ** 2
    for params in (*lo_hi(name), *(sample_params(name, rng) for _ in range(5))):
        m = mask(name, params, angle=float(rng.uniform(0, 2 * math.pi)))
        assert m.sum() > 0.15 * math.pi * (96 / 2.2) ** 2, (name, params)
        assert not m[outside].any(), (name, params)


def test_empty_params_are_the_canonical_shapes():
    for name in SHAPES:
        assert np.array_equal(
            mask(name, ()), coverage(SHAPES[name], (96, 96), (48, 48), 96 / 2.2, 0)
        )


def iou(a, b):
    return (a * b).sum() / np.maximum(a, b).sum()


def test_family_extremes_keep_their_names_apart():
    # the widest diamond is still no square; the widest-topped trapezoid is no rectangle of the
    # square's proportions; the roundest ellipse is no circle
    assert iou(mask("diamond", (0.8,), angle=math.pi / 4), mask("square", (0.0,))) < 0.9
    assert iou(mask("ellipse", (0.72,)), mask("circle", (0.95,))) < 0.8
    assert iou(mask("pentagon", (1.0,)), mask("hexagon", (1.0,))) < 0.95


def test_crescent_always_open_and_ring_always_holed():
    for ri, beyond in [(0.7, 0.08), (0.92, 0.08), (0.92, 0.35), (0.7, 0.35)]:
        inside = family_inside("crescent", (ri, beyond))
        # the rim on the bite's side is outside: the bite reaches the edge, so it is no ring
        assert not inside(np.array([0.94]), np.array([0.0]))[0]
        assert inside(np.array([-0.9]), np.array([0.0]))[0]
    for r in RANGES["ring"][0]:
        inside = family_inside("ring", (r,))
        assert not inside(np.array([0.0]), np.array([0.0]))[0]


def test_erode_by_hand():
    m = np.zeros((7, 7), dtype=bool)
    m[1:6, 1:6] = True
    assert erode(m, 1).sum() == 9 and erode(m, 2).sum() == 1 and erode(m, 3).sum() == 0


@pytest.mark.parametrize("style", [TRAIN, HELDOUT, CLEAN], ids=lambda s: s.name)
def test_styled_scenes_masks_are_painted_and_disjoint(style):
    for i in range(12):
        scene = render_styled(np.random.default_rng([1, i]), (64, 64), style, 3, True, (0.1, 0.3))
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 3 and len(scene.masks) == len(scene.objects)
        total = np.zeros((64, 64), dtype=int)
        for obj, m in zip(scene.objects, scene.masks, strict=True):
            assert obj.fill in style.fills and len(obj.params) == len(RANGES[obj.name])
            total += m
        assert total.max() <= 1  # modal masks do not overlap


def test_forced_background_and_fill():
    white = render_styled(
        np.random.default_rng(3), (64, 64), CLEAN, 1, True, (0.2, 0.3), "white", "flat"
    )
    black = render_styled(
        np.random.default_rng(3), (64, 64), CLEAN, 1, True, (0.2, 0.3), "black", "flat"
    )
    for scene, lo, hi in ((white, 200, 256), (black, 0, 50)):
        bg = scene.image[~scene.masks[0]].astype(float).mean(0)
        assert ((bg >= lo) & (bg < hi)).all(), bg
        obj = scene.image[erode(scene.masks[0], 1)].astype(float).mean(0)
        assert np.abs(obj - COLOURS[scene.objects[0].colour]).max() < 45
    outline = render_styled(
        np.random.default_rng(4), (64, 64), CLEAN, 1, True, (0.3, 0.36), None, "outline"
    )
    full = coverage(
        family_inside(outline.objects[0].name, outline.objects[0].params),
        (64, 64),
        outline.objects[0].centre,
        outline.objects[0].radius,
        outline.objects[0].angle,
    )
    assert outline.masks[0].sum() < 0.8 * full.sum()  # a stroke, not the filled shape
    assert set(BACKGROUNDS) >= set(TRAIN.backgrounds) | set(HELDOUT.backgrounds)
    assert not set(TRAIN.fills) & set(HELDOUT.fills)  # the style split's fills are never trained
    assert not set(TRAIN.backgrounds) & set(HELDOUT.backgrounds)


def test_jpeg_round_trip_changes_pixels_more_at_low_quality():
    scene = render_styled(np.random.default_rng(5), (64, 64), CLEAN, 2, True, (0.15, 0.3))
    err = {q: np.abs(jpeg(scene.image, q).astype(int) - scene.image).mean() for q in (95, 30)}
    assert 0 < err[95] < err[30], err


def test_robustness_conditions_draw_what_they_name():
    from ovdet.data.shapes.world import object_mask
    from ovdet.eval.shapes_clip import CONDITIONS, condition_scenes, pair_scenes

    for name in ("white background", "black background", "outline", "small (0.10-0.16)"):
        scenes = condition_scenes(name, 1, 6, 64)
        style, radius, bg, fill = CONDITIONS[name]
        for s in scenes:
            assert len(s.objects) == 1 and s.objects[0].fill == (fill or s.objects[0].fill)
            assert radius[0] * 64 <= s.objects[0].radius <= radius[1] * 64
    again = condition_scenes("outline", 1, 6, 64)
    assert all(
        np.array_equal(a.image, b.image)
        for a, b in zip(again, condition_scenes("outline", 1, 6, 64), strict=True)
    )
    for s in pair_scenes(2, 8, 64, overlap=True):
        a, b = (object_mask(o, (64, 64)) for o in s.objects)
        assert (a & b).any() and s.objects[0].category != s.objects[1].category
    for s in pair_scenes(2, 8, 64, overlap=False):
        a, b = (object_mask(o, (64, 64)) for o in s.objects)
        assert not (a & b).any() and s.objects[0].category != s.objects[1].category
        # each shape whole (painted masks differ from the outline by anti-aliased edge pixels)
        assert all(m.sum() >= 0.95 * f.sum() for m, f in zip(s.masks, (a, b), strict=True))


def test_caption_style_train_draws_families_and_says_every_object():
    from ovdet.data.shapes.captions import caption
    from ovdet.data.shapes.generate import WorldConfig, scene_for

    cfg = WorldConfig(captions=40, caption_style="train")
    counts = set()
    for i in range(40):
        scene = scene_for(0, "captions", i, cfg)
        assert scene.image.shape == (64, 64, 3)
        assert all(o.params and o.fill in TRAIN.fills for o in scene.objects)
        counts.add(len(scene.objects))
        text, mentions = caption(scene.objects, np.random.default_rng(i))
        assert len(mentions) == len(scene.objects)
    assert counts == {1, 2, 3}
    classic = scene_for(0, "captions", 0, WorldConfig())
    assert all(not o.params and o.fill == "flat" for o in classic.objects)


def test_caption_counts_set_how_many_objects_train_captions_show():
    from ovdet.data.shapes.generate import WorldConfig, scene_for
    from ovdet.errors import ConfigError

    cfg = WorldConfig(caption_style="train", caption_counts="0,0.6,0.4")
    counts = [len(scene_for(5, "captions", i, cfg).objects) for i in range(60)]
    assert 1 not in counts and {2, 3} <= set(counts), counts  # none single; both others drawn
    for bad in ("0.5,0.5", "1,0,0,0", "a,b,c", "0.6,0.6,-0.2", "0.5,0.2,0.2", "nan,0.5,0.5"):
        with pytest.raises(ConfigError, match=f"three shares.*got '{re.escape(bad)}'"):
            WorldConfig(caption_style="train", caption_counts=bad)
    with pytest.raises(ConfigError, match="applies to caption-style 'train'"):
        WorldConfig(caption_counts="0,1,0")


def test_line_backgrounds_are_thin_sharp_strokes_at_any_angle():
    a = BACKGROUNDS["lines"](np.random.default_rng(5), (64, 64))
    assert np.array_equal(a, BACKGROUNDS["lines"](np.random.default_rng(5), (64, 64)))
    edges = []
    for seed in range(20):
        img = BACKGROUNDS["lines"](np.random.default_rng(seed), (64, 64))
        assert img.shape == (64, 64, 3) and img.min() >= 0 and img.max() <= 255
        grey = img.mean(2)
        # a stroke is a pixel unlike both neighbours on one axis: one or two pixels wide
        ridge_x = np.abs(2 * grey[:, 1:-1] - grey[:, :-2] - grey[:, 2:]) > 20
        ridge_y = np.abs(2 * grey[1:-1] - grey[:-2] - grey[2:]) > 20
        edges.append(ridge_x.mean() + ridge_y.mean())
    assert min(edges) > 0.02 and np.median(edges) > 0.1, edges  # 1/f noise: 0.0, 0.04
