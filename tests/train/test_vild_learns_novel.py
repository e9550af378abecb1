"""The measured effect ViLD exists for: distilling CLIP's crop embeddings into the detector's
region embeddings lets a detector trained on base categories only name novel objects, which
ViLD-text (text classifier alone) does poorly. Measured as novel AP (AP_r, LVIS protocol) of the
detector's own RoI head naming det-val's ground-truth boxes, so that the comparison isolates
recognition from the (shared) proposal quality."""

import json

import pytest
import torch

from ovdet.data.coco import letterbox, normalize_imagenet
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.detect.vild import ViLDConfig
from ovdet.eval.detection import evaluate_detections
from ovdet.eval.recognition import gt_boxes_by_image, recognition_detections
from ovdet.io.images import load_image
from ovdet.models.loader import load_model
from ovdet.train.vild import (
    ViLDTrainConfig,
    build_distill_cache,
    load_detector,
    text_embeddings,
    train_vild,
)
from ovdet.vocab.parse import vocabulary_from_categories


@torch.no_grad()
def novel_recognition_ap(folder, val, images, text, novel):
    model, spec = load_detector(folder)
    ids = [c["id"] for c in sorted(val["categories"], key=lambda c: c["id"])]
    dets = []
    for im_id, boxes in gt_boxes_by_image(val).items():
        if len(boxes) == 0:
            continue
        file_name = next(im["file_name"] for im in val["images"] if im["id"] == im_id)
        pixels, scale, _ = letterbox(load_image(images / file_name), spec["side"])
        features = model.backbone(normalize_imagenet(pixels)[None])
        probs, _, _ = model.score_regions(features, [boxes * scale], text, novel)
        dets += recognition_detections(im_id, boxes, probs, ids)
    return evaluate_detections(val, dets, protocol="lvis").metrics["APr"]


@pytest.mark.slow
def test_distillation_raises_novel_ap_above_vild_text(tmp_path):
    world = generate_world(
        tmp_path / "w", WorldConfig(seed=11, captions=1, det_train=300, det_val=80)
    )
    train = json.loads((world / "det-train" / "annotations.json").read_text())
    val = json.loads((world / "det-val" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    base = train["ovd"]["base"]
    cfg = ViLDTrainConfig(
        steps=250, batch_size=8, checkpoint_every=250, distill_proposals=16, warmup=20
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
        CocoDetection(train, images, spec["base_ids"], 128),
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
    text = text_embeddings(clip, vocabulary_from_categories(cats), "ensemble")
    novel = torch.tensor([c["id"] not in base for c in cats])
    ap_text = novel_recognition_ap(text_only, val, world / "det-val", text, novel)
    ap_vild = novel_recognition_ap(distilled, val, world / "det-val", text, novel)
    assert ap_vild > ap_text + 5, (ap_text, ap_vild)
