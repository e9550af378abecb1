"""The measured effect ViLD exists for: distilling CLIP's crop embeddings lets a detector trained
on base categories only find novel ones, where ViLD-text (text classifier alone) cannot."""

import json

import pytest
import torch

from ovdet.data.coco import CocoDetection
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.detect.vild import ViLDConfig
from ovdet.models.loader import load_model
from ovdet.train.reproduce_vild import evaluate_on
from ovdet.train.vild import (
    ViLDTrainConfig,
    build_distill_cache,
    detect_image,
    load_detector,
    text_embeddings,
    train_vild,
)
from ovdet.vocab.parse import vocabulary_from_categories


@pytest.mark.slow
def test_distillation_raises_novel_ap_above_vild_text(tmp_path):
    world = generate_world(
        tmp_path / "w", WorldConfig(seed=11, captions=1, det_train=300, det_val=60)
    )
    train = json.loads((world / "det-train" / "annotations.json").read_text())
    val = json.loads((world / "det-val" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    base = train["ovd"]["base"]
    cfg = ViLDTrainConfig(
        steps=300, batch_size=8, checkpoint_every=300, distill_proposals=16, warmup=20
    )
    vild = ViLDConfig(embed_dim=clip.embed_dim, hidden=256)
    text_only = train_vild(
        train,
        world / "det-train",
        tmp_path / "text",
        clip,
        "shapes-clip",
        base,
        ViLDConfig(**{**vild.__dict__, "image_weight": 0.0}),
        cfg,
    )
    proposer, spec = load_detector(text_only)
    cache = build_distill_cache(
        proposer,
        clip,
        CocoDetection(train, world / "det-train", spec["base_ids"], 128),
        tmp_path / "cache",
        cfg.distill_proposals,
    )
    distilled = train_vild(
        train,
        world / "det-train",
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

    def novel_ap(folder):
        model, spec = load_detector(folder)
        m = evaluate_on(
            val,
            world / "det-val",
            lambda im: detect_image(model, spec, im, text, novel),
            [c["id"] for c in cats],
        )
        return m["APr"]

    ap_text, ap_vild = novel_ap(text_only), novel_ap(distilled)
    assert ap_vild > ap_text + 5, (ap_text, ap_vild)
