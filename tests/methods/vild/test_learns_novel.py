"""The measured effect ViLD exists for: distilling CLIP's crop embeddings into the detector's
region embeddings (here ViLD-ensemble: a text head plus a distilled image head) lets a detector
trained on base categories only name novel objects, which ViLD-text does poorly. Measured as
novel top-1 accuracy of the detector's own heads naming the ground-truth boxes of scenes with
uniformly drawn shapes (so that novel objects are many), which isolates recognition from the
(shared) proposal quality. At this short schedule novel AP is too noisy to separate the two
(every label of every box is ranked); the AP comparison is the README's reproduction table
(AP_r 12.0 -> 17.9 after 1,200 steps on 4,000 images).

To fit the suite's budget the scenes are 64 px and the backbone narrow ([16, 32, 64, 64]): the
same two runs at 128 px with the default backbone cost twice as much and measured 0.00 vs 0.17;
here 0.00 vs 0.14. Smaller RoI batches or a frozen shared backbone lost the effect (measured)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ovdet.data.coco import letterbox
from ovdet.data.shapes.generate import WorldConfig, annotations_of, category_records, generate_world
from ovdet.data.shapes.world import render_scene
from ovdet.io.images import load_image
from ovdet.methods.vild.detector import load_detector
from ovdet.methods.vild.model import ViLDConfig
from ovdet.methods.vild.train import ViLDTrainConfig, build_distill_cache, train_vild
from ovdet.models.loader import load_model
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories


@torch.no_grad()
def novel_top1(folder, val, images, text, novel) -> float:
    """Top-1 accuracy of the detector's heads on the ground-truth boxes of novel objects."""
    model, spec = load_detector(folder)
    order = [c["id"] for c in sorted(val["categories"], key=lambda c: c["id"])]
    novel_ids = {order[i] for i in novel.nonzero()[:, 0].tolist()}
    right = []
    for im in val["images"]:
        anns = [a for a in val["annotations"] if a["image_id"] == im["id"]]
        if not anns:
            continue
        boxes = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
        pixels, box = letterbox(load_image(images / im["file_name"]), spec["side"])
        probs, _, _ = model.score_regions(model.backbone(pixels), [box.boxes(boxes)], text, novel)
        for a, pred in zip(anns, probs.argmax(1).tolist(), strict=True):
            if a["category_id"] in novel_ids:
                right.append(order[pred] == a["category_id"])
    return float(np.mean(right))


def uniform_val(folder: Path, count: int, seed: int, size: int = 128) -> dict:
    """Scenes with uniformly drawn shapes (a third of the objects are novel), fully annotated."""
    images, anns = [], []
    for i in range(count):
        scene = render_scene(
            np.random.default_rng([seed, i]), (size, size), max_objects=4, uniform=True
        )
        name = f"{i:04d}.png"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(folder / name)
        new = annotations_of(scene, i + 1, len(anns) + 1)
        present = {a["category_id"] for a in new}
        images.append(
            {
                "id": i + 1,
                "file_name": name,
                "height": size,
                "width": size,
                "neg_category_ids": [c for c in range(1, 17) if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        anns += new
    return {"images": images, "annotations": anns, "categories": category_records()}


SIZE = 64


@pytest.mark.slow(seconds=125)
def test_distillation_names_novel_shapes_better_than_vild_text(tmp_path):
    world = generate_world(
        tmp_path / "w",
        WorldConfig(seed=11, captions=1, det_train=300, det_val=1, det_style=0, size=SIZE),
    )
    train = json.loads((world / "det-train" / "annotations.json").read_text())
    val = uniform_val(tmp_path / "val", 100, seed=77, size=SIZE)
    clip = load_model("shapes-clip")
    base = train["ovd"]["base"]
    cfg = ViLDTrainConfig(
        steps=250,
        batch_size=8,
        checkpoint_every=250,
        distill_proposals=8,
        warmup=20,
        side=SIZE,
        backbone_channels=[16, 32, 64, 64],
    )
    vild = ViLDConfig(embed_dim=clip.embed_dim, hidden=256)
    images = world / "det-train"
    text_only = train_vild(
        train,
        images,
        tmp_path / "text",
        clip,
        "shapes-clip",
        base,
        ViLDConfig(**{**vild.__dict__, "image_weight": 0.0}),
        cfg,
    )
    proposer, spec = load_detector(text_only)
    from ovdet.data.coco import CocoDetection

    cache = build_distill_cache(
        proposer,
        clip,
        CocoDetection(train, images, spec["base_ids"], SIZE),
        tmp_path / "cache",
        cfg.distill_proposals,
    )
    distilled = train_vild(
        train,
        images,
        tmp_path / "vild",
        clip,
        "shapes-clip",
        base,
        ViLDConfig(**{**vild.__dict__, "image_weight": 1.0}),
        cfg,
        distill=cache,
    )
    cats = sorted(val["categories"], key=lambda c: c["id"])
    text = embed_vocabulary(clip, vocabulary_from_categories(cats), "ensemble")
    novel = torch.tensor([c["id"] not in base for c in cats])
    acc_text = novel_top1(text_only, val, tmp_path / "val", text, novel)
    acc_vild = novel_top1(distilled, val, tmp_path / "val", text, novel)
    # measured here: 0.00 (ViLD-text never names a novel shape) vs 0.14
    assert acc_vild >= 0.10 and acc_vild > acc_text + 0.08, (acc_text, acc_vild)
