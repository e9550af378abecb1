"""`--engine ray` (Ray Data in local mode, 2 CPUs) writes what the single-process path writes:
the same detections file from `ovdet detect --images`, the same region index from
`ovdet index build`, the same RegionSpot feature cache from `ovdet cache`, the same SAM2CLIP
teacher cache from `ovdet train sam2clip`, unreadable images skipped alike."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ovdet.cli.main import main
from ovdet.data.shapes.generate import WorldConfig, generate_world


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    zeros = dict(det_train=0, det_style=0, det_captions=0, det_val_uniform=0)
    world = generate_world(
        tmp_path_factory.mktemp("w"),
        WorldConfig(seed=8, captions=1, det_val=6, det_captions_companion=0, **zeros),
    )
    folder = world / "det-val" / "images"
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


@pytest.mark.slow(seconds=50)  # four actor start-ups
def test_ray_engine_writes_what_the_local_engine_writes(ray_local, images, tmp_path, capsys):
    detect = ["detect", "--images", str(images), "--model", "shapes-vild", "--draw", "1",
              "--vocab", "circle, star, crescent, trapezoid", "--batch-size", "4"]  # fmt: skip
    assert main([*detect, "--out", str(tmp_path / "local.json")]) == 0
    assert main([*detect, "--out", str(tmp_path / "ray.json"), "--engine", "ray"]) == 0
    local, ray = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "ray"))
    assert local and ray == local
    skipped = json.loads((tmp_path / "ray.skipped.json").read_text())
    assert [s["file"].rsplit("/", 1)[1] for s in skipped] == ["broken.png"]

    build = ["index", "build", "--images", str(images), "--clip", "shapes-clip",
             "--proposals", "shapes-vild"]  # fmt: skip
    assert main([*build, "--out", str(tmp_path / "i-local")]) == 0
    one = ["--engine", "ray", "--actors", "1"]  # detect above checks the order across 2 actors
    assert main([*build, "--out", str(tmp_path / "i-ray"), *one]) == 0
    meta = [json.loads((tmp_path / d / "vectors.json").read_text()) for d in ("i-local", "i-ray")]
    assert meta[0] == meta[1] and meta[0]["count"] > 0
    for name in meta[0]["files"].values():
        if name.endswith(".npy"):
            a, b = (np.load(tmp_path / d / name) for d in ("i-local", "i-ray"))
            assert np.array_equal(a, b)
    rows = meta[0]["extra"]["rows"]
    assert np.array_equal(np.load(tmp_path / "i-local" / rows), np.load(tmp_path / "i-ray" / rows))

    val = images.parent
    cache = ["cache", "--gt", str(val / "annotations.json"), "--images", str(val),
             "--sam", "shapes-sam", "--clip", "shapes-clip", "--shard-size", "4"]  # fmt: skip
    assert main([*cache, "--out", str(tmp_path / "c-local")]) == 0
    assert main([*cache, "--out", str(tmp_path / "c-ray"), *one]) == 0
    shards = sorted(p.name for p in (tmp_path / "c-local").glob("*.safetensors"))
    assert len(shards) == 2
    assert shards == sorted(p.name for p in (tmp_path / "c-ray").glob("*.safetensors"))
    for name in shards:
        a, b = (load_file(tmp_path / d / name) for d in ("c-local", "c-ray"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    s2c = ["train", "sam2clip", "--images", str(images), "--sam", "shapes-sam", "--clip",
           "shapes-clip", "--steps", "0", "--val-images", "1", "--shard-size", "4",
           "--batch-size", "2"]  # fmt: skip
    for name, extra in (("local", []), ("ray", one)):
        out = tmp_path / f"s2c-{name}"
        assert main([*s2c, "--out", str(out), "--cache", str(tmp_path / f"t-{name}"), *extra]) == 0
    shards = sorted(p.name for p in (tmp_path / "t-local").glob("*.safetensors"))
    assert len(shards) == 2
    cached = 0
    for name in shards:
        a, b = (load_file(tmp_path / d / name) for d in ("t-local", "t-ray"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        cached += len(a)
    assert cached == 6  # of 7 files: broken.png is skipped
