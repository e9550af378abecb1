import json

import pytest
import torch
from once import built_once
from resume import assert_resumes

from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.io.images import load_image
from ovdet.methods.regionspot.recognizer import (
    FeatureExtractor,
    RegionSpotRecognizer,
    load_regionspot,
)
from ovdet.methods.regionspot.train import (
    RegionSpotTrainConfig,
    build_cache,
    cached_class_scores,
    evaluate_cached,
    train_regionspot,
)
from ovdet.models.loader import load_model
from ovdet.models.sam import SamBackend
from ovdet.train.feature_cache import ShardedCache


def _build_cached(root):
    world = generate_world(
        root / "world",
        WorldConfig(
            seed=5,
            captions=0,
            det_train=160,
            det_val=40,
            det_style=0,
            det_captions=0,
            det_val_uniform=0,
            det_captions_companion=0,
        ),
    )
    extractor = FeatureExtractor(
        SamBackend.from_pretrained("shapes-sam"), load_model("shapes-clip"), 128
    )
    names = {"sam": "shapes-sam", "clip": "shapes-clip"}
    for split in ("det-train", "det-val"):
        gt = json.loads((world / split / "annotations.json").read_text())
        build_cache(gt, world / split, root / split, extractor, names, 64, False)


@pytest.fixture(scope="session")
def cached(tmp_path_factory, worker_id):
    """A small shapes world cached with the bundled shapes-sam and shapes-clip (built once for
    all test processes)."""
    root = built_once(tmp_path_factory, worker_id, "rs", _build_cached)
    gts = {
        split: json.loads((root / "world" / split / "annotations.json").read_text())
        for split in ("det-train", "det-val")
    }
    return root, gts, load_model("shapes-clip")


def cfg(**kw):
    return RegionSpotTrainConfig(
        **{"batch_size": 8, "warmup": 10, "checkpoint_every": 50, "heads": 4, **kw}
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


@pytest.mark.slow(seconds=30)  # with the feature cache it builds
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
    # untrained, every query reads the whole image alike; training teaches where to look
    assert ap["after"]["AP"] >= ap["before"]["AP"] + 10
    assert ap["after"]["APr"] >= ap["before"]["APr"] + 5  # novel shapes, never trained on


def test_resume_after_a_kill_equals_an_uninterrupted_run(cached, tmp_path):

    root, gts, clip = cached
    base = gts["det-train"]["ovd"]["base"]
    c = cfg(steps=6, checkpoint_every=3)
    args = (root / "det-train", gts["det-train"])
    assert_resumes(
        lambda out, stop: train_regionspot(*args, out, clip, base, c, False, stop=stop),
        tmp_path,
        6,
        kill_at=3,
    )


def test_recognizer_names_boxes_with_masks(cached, tmp_path):
    root, gts, clip = cached
    folder = train_regionspot(
        root / "det-train",
        gts["det-train"],
        tmp_path / "r",
        clip,
        gts["det-train"]["ovd"]["base"],
        cfg(steps=2),
        False,
    )
    spot = RegionSpotRecognizer(folder)
    assert spot.spec["sam"] == "shapes-sam" and spot.spec["clip"] == "shapes-clip"
    from ovdet.vocab.parse import parse_vocabulary

    text = spot.text_embeddings(parse_vocabulary("circle, star, heart"))
    # the live recognizer on a cached image equals the model on the features read from the cache
    im = gts["det-val"]["images"][0]
    reader = ShardedCache(root / "det-val").reader()
    cached = cached_class_scores(spot.model, reader, text, spot.spec["token"])[str(im["id"])]
    image = load_image(root / "world" / "det-val" / im["file_name"])
    live = spot.recognize(image, cached[0], text)
    assert len(live) == len(cached[0]) >= 2
    torch.testing.assert_close(live.data["class_scores"], cached[1], atol=1e-5, rtol=0)
    image = torch.randint(0, 255, (3, 90, 120), dtype=torch.uint8)
    boxes = torch.tensor([[5.0, 5, 60, 50], [40, 20, 110, 85]])
    regions = spot.recognize(image, boxes, text)
    assert regions.masks.shape == (2, 90, 120) and regions.data["class_scores"].shape == (2, 3)
    assert torch.equal(regions.scores, regions.data["class_scores"].max(1).values)
    detected = spot.detect(image, text, boxes)
    # given boxes without scores: each keeps its best class and score, same-class NMS at 0.5
    from ovdet.ops.nms import batched_nms

    keep = batched_nms(regions.xyxy, regions.scores, regions.labels, 0.5)
    assert torch.equal(detected.labels, regions.labels[keep]) and detected.masks is not None
    torch.testing.assert_close(detected.scores, regions.scores[keep])
    torch.testing.assert_close(detected.xyxy, regions.xyxy[keep])
