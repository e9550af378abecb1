import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from resume import assert_resumes, assert_same_weights, steps_run_after_resume

from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.methods.vild.detector import detect_image, load_detector
from ovdet.methods.vild.model import ViLDConfig
from ovdet.methods.vild.train import ViLDTrainConfig, train_vild
from ovdet.train.feature_cache import ShardedCache


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(
        tmp_path_factory.mktemp("w"),
        WorldConfig(
            seed=2,
            captions=1,
            det_train=12,
            det_val=2,
            det_style=0,
            det_captions=0,
            det_val_uniform=0,
            det_captions_companion=0,
            size=64,
        ),
    )


def small_cfg(**kw):
    return ViLDTrainConfig(
        **{
            "steps": 4,
            "batch_size": 2,
            "side": 64,
            "checkpoint_every": 2,
            "warmup": 2,
            "backbone_channels": [8, 8, 16, 16],
            "templates": "single",
            **kw,
        }
    )


def run(world, tiny_clip, tiny_clip_dir, out, cfg=None, **kw):
    gt = json.loads((world / "det-train" / "annotations.json").read_text())
    vild = ViLDConfig(embed_dim=tiny_clip.embed_dim, image_weight=0.0, hidden=32)
    return train_vild(
        gt,
        world / "det-train",
        out,
        tiny_clip,
        str(tiny_clip_dir),
        gt["ovd"]["base"],
        vild,
        cfg or small_cfg(),
        **kw,
    )


def test_resume_after_a_kill_equals_an_uninterrupted_run(world, tiny_clip, tiny_clip_dir, tmp_path):
    assert_resumes(
        lambda out, stop: run(world, tiny_clip, tiny_clip_dir, out, stop=stop),
        tmp_path,
        steps=4,
        kill_at=2,
    )


def test_checkpoint_detects_any_vocabulary_in_image_pixels(
    world, tiny_clip, tiny_clip_dir, tmp_path
):
    folder = run(world, tiny_clip, tiny_clip_dir, tmp_path / "c")
    model, spec = load_detector(folder)
    assert spec["clip"] == str(tiny_clip_dir) and len(spec["base_names"]) == 11
    assert spec["kind"] == "vild"
    image = torch.randint(0, 255, (3, 80, 100), dtype=torch.uint8)
    text, novel = torch.randn(5, tiny_clip.embed_dim), torch.tensor([0, 0, 0, 1, 1]).bool()
    regions = detect_image(model, spec, image, text, novel)
    # the same detections as the model on the letterboxed image, mapped back to image pixels
    from ovdet.data.coco import letterbox

    pixels, box = letterbox(image, spec["side"])
    assert box.resized == (round(80 * spec["side"] / 100), spec["side"])
    (raw,) = model.detect(pixels, [box.resized], text, novel)
    assert len(raw) > 0 and regions.image_size == (80, 100)
    want = torch.minimum((raw.xyxy / box.scale).clamp(min=0), torch.tensor([100.0, 80, 100, 80]))
    torch.testing.assert_close(regions.xyxy, want)
    assert torch.equal(regions.labels, raw.labels) and torch.equal(regions.scores, raw.scores)
    assert regions.data["class_scores"].shape == (len(regions), 5)


def test_sharded_cache_resumes(tmp_path):
    calls = []

    def compute(i):
        calls.append(i)
        return {"x": torch.full((2,), float(i))}

    cache = ShardedCache(tmp_path, shard_size=3)
    cache.build(list(range(5)), compute, progress=False)
    assert calls == [0, 1, 2, 3, 4]
    again = ShardedCache(tmp_path, shard_size=3)
    again.build(list(range(7)), compute, progress=False)
    assert calls[5:] == [5, 6]
    loaded = again.load()
    assert sorted(loaded, key=int) == [str(i) for i in range(7)] and loaded["4"]["x"].tolist() == [
        4.0,
        4.0,
    ]
    assert list(again.load([1]).keys()) == ["1"]


def test_detect_cli_writes_json_and_png(world, tiny_clip, tiny_clip_dir, tmp_path, capsys):
    from ovdet.cli.main import main

    folder = run(world, tiny_clip, tiny_clip_dir, tmp_path / "d")
    image = world / "det-val" / "images" / "000000.png"
    code = main(
        [
            "detect",
            str(image),
            "--model",
            str(folder),
            "--vocab",
            "circle, crescent|moon",
            "--min-score",
            "0",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    entries = json.loads((tmp_path / "out" / "000000.json").read_text())
    assert entries and {e["category_name"] for e in entries} <= {"circle", "crescent"}
    assert json.loads((tmp_path / "out" / "detections.json").read_text()) == entries
    assert (tmp_path / "out" / "000000.png").is_file()
    assert main(["detect", str(image), "--model", str(tmp_path / "nope"), "--vocab", "circle"]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err


class Killed(BaseException):
    """A kill: nothing after it runs (not even `except Exception` blocks)."""


@pytest.mark.parametrize("point", [0, 1, 2])
def test_a_kill_at_any_point_of_a_checkpoint_write_resumes_exactly(
    world, tiny_clip, tiny_clip_dir, tmp_path, monkeypatch, point
):
    """The step-4 checkpoint renames three files (state, weights, spec); kill before rename
    `point`, resume, and the final weights equal an uninterrupted run's."""
    import os

    from ovdet.io import atomic

    straight = run(world, tiny_clip, tiny_clip_dir, tmp_path / "a")
    run(world, tiny_clip, tiny_clip_dir, tmp_path / "b", stop=lambda done: done >= 2)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > point:
            raise Killed()
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(Killed):
        run(world, tiny_clip, tiny_clip_dir, tmp_path / "b", stop=lambda done: done >= 4)
    monkeypatch.setattr(atomic.os, "replace", real)
    resumed, seen = steps_run_after_resume(
        lambda out, stop: run(world, tiny_clip, tiny_clip_dir, out, stop=stop), tmp_path / "b"
    )
    # killed before the state's rename: steps 3 and 4 again; after it: nothing left to run
    assert seen == ([3, 4] if point == 0 else [])
    assert_same_weights(straight, resumed)
    leftovers = [p.name for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


def test_resuming_with_another_configuration_is_refused(world, tiny_clip, tiny_clip_dir, tmp_path):
    from ovdet.errors import OvdetError

    run(world, tiny_clip, tiny_clip_dir, tmp_path / "r", stop=lambda done: done >= 2)
    with pytest.raises(OvdetError, match="another configuration"):
        run(world, tiny_clip, tiny_clip_dir, tmp_path / "r", cfg=small_cfg(lr=0.5))


def test_detect_output_chains_into_eval(world, tiny_clip, tiny_clip_dir, tmp_path, capsys):
    """`ovdet detect`'s detections.json goes straight into `ovdet eval`, with file-name ids or
    the --gt file's integer ids (same metrics); two inputs sharing a stem keep both outputs."""
    import shutil

    from ovdet.cli.main import main

    folder = run(world, tiny_clip, tiny_clip_dir, tmp_path / "d")
    val = world / "det-val"
    images = [str(val / "images" / "000000.png"), str(val / "images" / "000001.png")]
    base = ["detect", *images, "--model", str(folder), "--vocab", "circle, crescent, star"]
    assert main([*base, "--min-score", "0", "--out", str(tmp_path / "o1")]) == 0
    assert main([*base, "--gt", str(val / "annotations.json"), "--out", str(tmp_path / "o2")]) == 0
    by_name = json.loads((tmp_path / "o1" / "detections.json").read_text())
    by_id = json.loads((tmp_path / "o2" / "detections.json").read_text())
    assert by_name and {e["image_id"] for e in by_id} == {1, 2}
    assert {e["image_id"] for e in by_name} == {Path(p).as_posix() for p in images}
    gt = json.loads((val / "annotations.json").read_text())
    names = {c["name"]: c["id"] for c in gt["categories"]}
    metrics = []
    assert all(e["category_id"] == names[e["category_name"]] for e in by_id)  # --gt: its ids
    for e in by_name:  # without --gt: vocabulary index + 1, mapped here by name
        e["category_id"] = names[e["category_name"]]
    (tmp_path / "o1" / "detections.json").write_text(json.dumps(by_name))
    for out, folder_ in (("m1", "o1"), ("m2", "o2")):
        dt = tmp_path / folder_ / "detections.json"  # the --gt run's file goes in as written
        code = main(
            [
                "eval",
                "--gt",
                str(val / "annotations.json"),
                "--dt",
                str(dt),
                "--out",
                str(tmp_path / out),
            ]
        )
        assert code == 0
        metrics.append(json.loads((tmp_path / out / "metrics.json").read_text())["metrics"])
    assert metrics[0] == metrics[1]
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(images[0], twin / "a.png")
    Image.open(images[1]).convert("RGB").save(twin / "a.jpg")
    code = main(
        [
            "detect",
            str(twin / "a.png"),
            str(twin / "a.jpg"),
            "--model",
            str(folder),
            "--vocab",
            "circle",
            "--out",
            str(tmp_path / "o3"),
        ]
    )
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "o3").iterdir())
    assert written == ["a.jpg.json", "a.jpg.png", "a.png.json", "a.png.png", "detections.json"]


def test_zero_steps_writes_the_initial_model(world, tiny_clip, tiny_clip_dir, tmp_path):
    folder = run(world, tiny_clip, tiny_clip_dir, tmp_path / "z", cfg=small_cfg(steps=0))
    model, spec = load_detector(folder)  # the printed path is a loadable checkpoint
    assert spec["train"]["steps"] == 0


def test_init_and_frozen_backbone_train_only_the_heads(world, tiny_clip, tiny_clip_dir, tmp_path):
    source = run(world, tiny_clip, tiny_clip_dir, tmp_path / "src")
    before, _ = load_detector(source)
    tuned_cfg = small_cfg(init=str(source), freeze_backbone=True, seed=5)
    start = run(world, tiny_clip, tiny_clip_dir, tmp_path / "ft0", cfg=replace(tuned_cfg, steps=0))
    tuned = run(world, tiny_clip, tiny_clip_dir, tmp_path / "ft", cfg=tuned_cfg)
    at_start, after = load_detector(start)[0], load_detector(tuned)[0]
    for part in ("backbone", "rpn"):  # copied from the source and kept fixed
        want, got = getattr(before, part).state_dict(), getattr(after, part).state_dict()
        for k in want:
            torch.testing.assert_close(got[k], want[k], msg=f"{part}.{k}")
    for part in ("text_head",):  # the head moved from its own step-0 state (not the source's)
        want, got = getattr(at_start, part).state_dict(), getattr(after, part).state_dict()
        still = [k for k in want if k.endswith("weight") and torch.equal(got[k], want[k])]
        assert not still, f"{part}: {still} did not train"


def test_frozen_features_within_a_byte_budget_equal_unlimited_ones(
    world, tiny_clip, tiny_clip_dir, tmp_path
):
    """The least recently used images are dropped past the budget and computed again: the same
    features and proposals, the memory bounded."""
    from ovdet.data.coco import CocoDetection
    from ovdet.methods.vild.train import FrozenFeatures

    model, spec = load_detector(run(world, tiny_clip, tiny_clip_dir, tmp_path / "f"))
    gt = json.loads((world / "det-train" / "annotations.json").read_text())
    data = CocoDetection(gt, world / "det-train", spec["base_ids"], spec["side"])
    unlimited, tight = FrozenFeatures(model), FrozenFeatures(model, max_bytes=1)
    for picked in ([0, 1], [2, 0], [1, 1], [3, 4], [0, 4]):
        batch = [data[i] for i in picked]
        (fa, pa), (fb, pb) = unlimited.get(picked, batch), tight.get(picked, batch)
        torch.testing.assert_close(fa, fb)
        assert all(torch.equal(a, b) for a, b in zip(pa, pb, strict=True))
        assert len(tight.memo) == 1  # the budget keeps one image at the most
    assert len(unlimited.memo) == 5 and unlimited.bytes > tight.bytes
