import json

import pytest
import torch
from safetensors.torch import load_file

from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.detect.vild import ViLDConfig
from ovdet.train.feature_cache import ShardedCache
from ovdet.train.vild import ViLDTrainConfig, detect_image, load_detector, train_vild


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(
        tmp_path_factory.mktemp("w"),
        WorldConfig(seed=2, captions=1, det_train=12, det_val=2, size=64),
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


def run(world, tiny_clip, tiny_clip_dir, out, **kw):
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
        small_cfg(),
        **kw,
    )


def test_resume_after_a_kill_equals_an_uninterrupted_run(world, tiny_clip, tiny_clip_dir, tmp_path):
    straight = run(world, tiny_clip, tiny_clip_dir, tmp_path / "a")
    run(
        world, tiny_clip, tiny_clip_dir, tmp_path / "b", stop_after=2
    )  # "killed" after step 2's checkpoint
    assert torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)["step"] == 2
    resumed = run(world, tiny_clip, tiny_clip_dir, tmp_path / "b")
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_checkpoint_detects_any_vocabulary(world, tiny_clip, tiny_clip_dir, tmp_path):
    folder = run(world, tiny_clip, tiny_clip_dir, tmp_path / "c")
    model, spec = load_detector(folder)
    assert spec["clip"] == str(tiny_clip_dir) and len(spec["base_names"]) == 11
    image = torch.randint(0, 255, (3, 80, 100), dtype=torch.uint8)
    regions = detect_image(
        model,
        spec,
        image,
        torch.randn(5, tiny_clip.embed_dim),
        torch.tensor([0, 0, 0, 1, 1]).bool(),
    )
    assert regions.image_size == (80, 100) and len(regions) <= 100
    assert (
        (regions.xyxy[:, 2] <= 100).all()
        and (regions.xyxy[:, 3] <= 80).all()
        and (regions.labels < 5).all()
    )


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
    assert (tmp_path / "out" / "000000.png").is_file()
    assert main(["detect", str(image), "--model", str(tmp_path / "nope"), "--vocab", "circle"]) == 2
    assert "not a ViLD checkpoint" in capsys.readouterr().err
