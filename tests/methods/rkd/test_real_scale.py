"""RKD on the real-size code path: fine-tuning the shared FPN ViLD-text run (tests/real_scale.py)
moves the student's region embeddings towards the teacher's (shapes-clip on the FPN RPN's
proposals): the distillation loss over every cached region falls."""

import pytest
import torch
from real_scale import STEPS, training_set

from ovdet.data.coco import CocoDetection
from ovdet.losses.rkd import rkd_l1_loss
from ovdet.methods.rkd.cache import build_region_cache
from ovdet.methods.rkd.labelers import ClipScoredLabeler, RPNProposals
from ovdet.methods.rkd.train import RKDTrainConfig, train_rkd
from ovdet.methods.vild.detector import load_detector
from ovdet.recognize.dense import DenseEmbedder
from ovdet.vocab.embed import embed_vocabulary


@torch.no_grad()
def region_l1(folder, dataset, cache) -> float:
    """Mean |normalize(student) - normalize(teacher)| over every cached region (the L1 loss
    without its weight), with the detector in `folder`."""
    model, _ = load_detector(folder)
    values = []
    for key, entry in cache.items():
        features = model.backbone(dataset[int(key)].pixels[None])
        student, _ = model.text_head(features, [entry["boxes"]])
        values.append(rkd_l1_loss(student, entry["embeddings"], 1.0))
    return float(torch.stack(values).mean())


@pytest.mark.slow(seconds=30)
def test_rkd_distillation_moves_regions_towards_the_teacher_on_the_fpn_path(fpn_run, tmp_path):
    root, folders = fpn_run
    gt, clip, vocab = training_set(root)
    proposer, spec = load_detector(folders[STEPS])
    labeler = ClipScoredLabeler(
        RPNProposals(proposer, spec),
        DenseEmbedder(clip),
        embed_vocabulary(clip, vocab, "single"),
        clip.logit_scale,
        "rpn",
    )
    dataset = CocoDetection(gt, root / "w" / "det-train", spec["base_ids"], spec["side"])
    regions = build_region_cache(labeler, clip, dataset, tmp_path / "regions", 5)
    cfg = RKDTrainConfig(  # point-wise L1 at its default weight: the distance measured here
        init=str(folders[STEPS]), steps=200, batch_size=2, warmup=5, checkpoint_every=200, lr=2e-3,
        irm_weight=0,
    )  # fmt: skip
    folder = train_rkd(gt, root / "w" / "det-train", tmp_path / "rkd", cfg, regions, clip=clip)
    cache = regions.load()
    before, after = region_l1(folders[STEPS], dataset, cache), region_l1(folder, dataset, cache)
    # measured: 0.0995 -> 0.0905 (-9.0%) over the 100 images' 500 regions. With IRM at its
    # default weight too, the relations pull against the point-wise distance: -4.5% with torch's
    # global sampler, -0.5% with per-image samplers (one run each), so IRM is left out here
    assert after <= 0.95 * before, (before, after)
    _, tuned = load_detector(folder)
    assert tuned["backbone"] == spec["backbone"] and tuned["kind"] == "rkd"
