import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ovdet.data.shapes.draw import SHAPES, shape_mask
from ovdet.data.shapes.generate import (
    WorldConfig,
    companion_draw,
    generate_world,
    scene_for,
    split_ids,
)
from ovdet.data.shapes.world import CATEGORIES, COLOURS, COMPANIONS, render_scene
from ovdet.io.images import load_image
from ovdet.ops.masks import rle_decode

CFG = WorldConfig(
    seed=3,
    captions=300,
    det_train=80,
    det_val=30,
    det_style=10,
    det_captions=12,
    det_val_uniform=10,
    det_captions_companion=12,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("world"), CFG)


def load(world, split):
    return json.loads((world / split / "annotations.json").read_text())


def test_at_least_16_shapes_and_8_colours_all_distinct():
    assert len(CATEGORIES) >= 16 and len(COLOURS) >= 8
    masks = [shape_mask(s, (48, 48), (24, 24), 20, 0.0) for s in SHAPES]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.95, (list(SHAPES)[i], list(SHAPES)[j], iou)  # circle vs pentagon: 0.90


def test_generation_is_deterministic(world, tmp_path):
    again = generate_world(tmp_path / "again", WorldConfig(**vars(CFG)))  # a fresh, equal config
    for rel in (
        "det-train/annotations.json",
        "det-val/annotations.json",
        "captions/captions.json",
        "det-val/images/000007.png",
        "det-style/annotations.json",
        "det-style/images/000004.png",
        "det-captions/captions.json",
        "det-captions/oracle.json",
        "det-val-uniform/annotations.json",
    ):
        assert (world / rel).read_bytes() == (again / rel).read_bytes(), rel
    # any image can be regenerated alone
    alone = scene_for(3, "det-val", 7, CFG)
    assert torch.equal(
        load_image(world / "det-val/images/000007.png"),
        torch.from_numpy(alone.image).permute(2, 0, 1),
    )
    other = scene_for(4, "det-val", 7, CFG)
    assert not np.array_equal(other.image, alone.image)


def test_masks_agree_with_boxes_and_pixels(world):
    val = load(world, "det-val")
    assert val["annotations"]
    for ann in val["annotations"]:
        mask = rle_decode(ann["segmentation"]).numpy()
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        assert ann["area"] == mask.sum()
    # painted pixels are the object's colour (within shading and noise)
    ann = val["annotations"][0]
    image = (
        load_image(world / "det-val" / val["images"][ann["image_id"] - 1]["file_name"])
        .permute(1, 2, 0)
        .numpy()
    )
    pixels = image[rle_decode(ann["segmentation"]).numpy()].astype(float)
    assert np.abs(pixels.mean(0) - COLOURS[ann["attributes"]["colour"]]).max() < 40


def test_novel_removed_from_train_kept_in_images_and_in_val(world):
    base, novel = split_ids()
    assert len(novel) == sum(f == "r" for _, f, _ in CATEGORIES) and set(base) | set(novel) == set(
        range(1, 17)
    )
    train, val = load(world, "det-train"), load(world, "det-val")
    assert train["ovd"] == {"base": base, "novel": novel}
    assert not [a for a in train["annotations"] if a["category_id"] in novel]
    assert [a for a in val["annotations"] if a["category_id"] in novel]
    # the novel objects are still drawn in det-train's images
    drawn = [
        o.category + 1
        for i in range(CFG.det_train)
        for o in scene_for(3, "det-train", i, CFG).objects
    ]
    assert set(drawn) & set(novel)
    # every absent category is a verified negative in det-val
    for im in val["images"]:
        present = {a["category_id"] for a in val["annotations"] if a["image_id"] == im["id"]}
        assert set(im["neg_category_ids"]) == set(range(1, 17)) - present


def test_long_tail_frequencies(world):
    cats = load(world, "det-train")["categories"]
    mean = {g: np.mean([c["image_count"] for c in cats if c["frequency"] == g]) for g in "fcr"}
    assert mean["f"] > mean["c"] > mean["r"]
    assert all(c["synonyms"][0] == c["name"] for c in cats)


def test_captions_mention_every_category_including_novel(world):
    records = json.loads((world / "captions" / "captions.json").read_text())
    assert len(records) == 300
    assert {m["category"] for r in records for m in r["mentions"]} == {c[0] for c in CATEGORIES}
    assert any(m["colour"] is None for r in records for m in r["mentions"])  # plain prompts too
    assert len({r["caption"].split()[0] for r in records}) > 5  # varied wording
    for r in records:
        assert [m["category"] for m in r["mentions"]] == [o["category"] for o in r["objects"]]


def test_occlusion_leaves_objects_visible():
    for i in range(30):
        scene = render_scene(np.random.default_rng([9, i]), max_objects=4)
        for obj, mask in zip(scene.objects, scene.masks, strict=True):
            full = shape_mask(obj.name, (128, 128), obj.centre, obj.radius, obj.angle)
            assert mask.sum() >= 0.6 * full.sum() - 1


def test_a_killed_generation_leaves_the_previous_world(tmp_path, monkeypatch):
    from ovdet.data.shapes import generate

    small = WorldConfig(
        seed=1,
        captions=2,
        det_train=3,
        det_val=2,
        det_style=0,
        det_captions=0,
        det_val_uniform=0,
        det_captions_companion=0,
        size=64,
    )
    out = generate_world(tmp_path / "w", small)
    before = (out / "det-train" / "annotations.json").read_text()
    calls = []

    def dies(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # killed in the middle of det-train
        return real(*a, **k)

    real = generate._save_png
    monkeypatch.setattr(generate, "_save_png", dies)
    with pytest.raises(KeyboardInterrupt):
        generate_world(out, replace(small, seed=2))
    assert (out / "det-train" / "annotations.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no half-written world beside
    with pytest.raises(Exception, match="holds other files"):
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("x")
        generate_world(tmp_path / "mine", small)


def test_import_and_help_do_not_load_transformers():
    import subprocess
    import sys

    code = (
        "import sys, ovdet, ovdet.cli.main as m; m.build_parser(); "
        "import ovdet.eval.detection; print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_caption_scenes_carry_captions_not_boxes(world):
    data = json.loads((world / "det-captions" / "captions.json").read_text())
    oracle = json.loads((world / "det-captions" / "oracle.json").read_text())
    assert len(data["images"]) == CFG.det_captions == len(data["annotations"])
    assert all(set(a) == {"id", "image_id", "caption", "mentions"} for a in data["annotations"])
    per_image = {}
    for a in oracle["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a["category_id"])
    assert all(2 <= len(v) <= 4 for v in per_image.values()) and len(per_image) == CFG.det_captions
    names = {c["id"]: c["name"] for c in oracle["categories"]}
    for cap in data["annotations"]:  # the caption names every object of its scene
        said = sorted(m["category"] for m in cap["mentions"])
        assert said == sorted(names[c] for c in per_image[cap["image_id"]])
    _, novel = split_ids()
    assert any(c in novel for v in per_image.values() for c in v)  # novel shapes are captioned


def test_uniform_val_holds_novel_shapes_in_proportion(world):
    val = load(world, "det-val-uniform")
    _, novel = split_ids()
    share = np.mean([a["category_id"] in novel for a in val["annotations"]])
    assert len(val["images"]) == CFG.det_val_uniform and 0.15 < share < 0.5, share  # 5/16 expected


def _partner_rate(companion: float) -> float:
    """Of (scene, novel shape) pairs, the share whose scene also holds the shape's partner."""
    names = [n for n, _, _ in CATEGORIES]
    pairs = hits = 0
    for i in range(3000):
        drawn = companion_draw(np.random.default_rng([0, i]), WorldConfig(companion=companion))
        for c in set(drawn):
            if names[c] in COMPANIONS:
                pairs += 1
                hits += names.index(COMPANIONS[names[c]]) in drawn
    return hits / pairs


def test_companion_draws_bring_each_novel_shapes_partner_at_the_set_rate():
    chance, half, always = _partner_rate(0.0), _partner_rate(0.5), _partner_rate(1.0)
    assert always == 1.0 and chance < 0.3, (chance, always)
    # the partner joins half of the scenes it was not drawn in already
    assert abs(half - (chance + 0.5 * (1 - chance))) < 0.05, (chance, half)


def test_companion_split_is_captioned_like_det_captions(world):
    data = json.loads((world / "det-captions-companion" / "captions.json").read_text())
    oracle = json.loads((world / "det-captions-companion" / "oracle.json").read_text())
    assert len(data["images"]) == CFG.det_captions_companion
    names = {c["id"]: c["name"] for c in oracle["categories"]}
    for cap in data["annotations"]:
        objects = sorted(
            names[a["category_id"]]
            for a in oracle["annotations"]
            if a["image_id"] == cap["image_id"]
        )
        assert sorted(m["category"] for m in cap["mentions"]) == objects
