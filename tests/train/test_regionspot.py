import json

import pytest
import torch

from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.models.loader import load_model
from ovdet.models.sam import SamBackend
from ovdet.recognize.regionspot import FeatureExtractor, RegionSpotRecognizer, load_regionspot
from ovdet.train.feature_cache import ShardedCache
from ovdet.train.regionspot import (
    RegionSpotTrainConfig,
    build_cache,
    evaluate_cached,
    train_regionspot,
)


@pytest.fixture(scope="module")
def cached(tmp_path_factory, tiny_sam_dir):
    """A small shapes world cached with a random tiny SAM and the bundled shapes-clip."""
    root = tmp_path_factory.mktemp("rs")
    world = generate_world(
        root / "world", WorldConfig(seed=5, captions=0, det_train=160, det_val=40)
    )
    sam = SamBackend.from_pretrained(str(tiny_sam_dir))
    clip = load_model("shapes-clip")
    extractor = FeatureExtractor(sam, clip, 128)
    names = {"sam": str(tiny_sam_dir), "clip": "shapes-clip"}
    gts = {}
    for split in ("det-train", "det-val"):
        gts[split] = json.loads((world / split / "annotations.json").read_text())
        build_cache(gts[split], world / split, root / split, extractor, names, 64, False)
    return root, gts, clip


def cfg(**kw):
    return RegionSpotTrainConfig(
        **{"batch_size": 8, "warmup": 10, "checkpoint_every": 50, "heads": 4, "prior": "box", **kw}
    )


def test_cache_holds_every_image_and_token_variant(cached):
    root, gts, _ = cached
    reader = ShardedCache(root / "det-val").reader()
    assert len(reader) == 40
    image = gts["det-val"]["images"][0]
    item = reader[image["id"]]
    n = sum(a["image_id"] == image["id"] for a in gts["det-val"]["annotations"])
    assert item["xyxy"].shape == (n, 4) and item["labels"].shape == (n,)
    assert {k for k in item if k.startswith("tok_")} == {"tok_transformer", "tok_prompt", "tok_mlp"}
    assert item["clip_map"].shape == (128, 16, 16) and item["clip_global"].shape == (128,)


def test_training_raises_ap_on_novel_and_all(cached, tmp_path):
    root, gts, clip = cached
    base = gts["det-train"]["ovd"]["base"]
    before = train_regionspot(
        root / "det-train", gts["det-train"], tmp_path / "s0", clip, base, cfg(steps=0), False
    )
    after = train_regionspot(
        root / "det-train", gts["det-train"], tmp_path / "s1", clip, base, cfg(steps=300), False
    )
    ap = {}
    for name, folder in (("before", before), ("after", after)):
        model, spec = load_regionspot(folder)
        ap[name] = evaluate_cached(model, spec["token"], root / "det-val", gts["det-val"], clip)
    print(ap)
    assert ap["after"]["AP"] >= ap["before"]["AP"] + 5
