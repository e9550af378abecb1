"""The measured effects of RKD's distillation on regions it never trained on: after a short
fine-tuning of the bundled base-trained `shapes-vild-text` (backbone and RPN frozen, as the
reproduction does), the region embeddings of held-out *novel* ground-truth boxes move towards
CLIP's own embeddings of those crops, point-wise (L1) and in their geometry (the relation error
that IRM targets), compared with the same fine-tuning without distillation.

(Whether that turns into novel AP in the shapes world is the reproduction's question; the
README's RKD table answers it.) The distilled regions are the top-5 proposals of the init's own
RPN, which are cheap to compute."""

import json

import pytest
import torch
import torch.nn.functional as F
from once import built_once

from ovdet.data.coco import CocoDetection, letterbox
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.io.images import load_image
from ovdet.losses.rkd import relation_matrix
from ovdet.methods.rkd.cache import build_region_cache
from ovdet.methods.rkd.labelers import ClipScoredLabeler, RPNProposals
from ovdet.methods.rkd.train import RKDTrainConfig, train_rkd
from ovdet.methods.vild.detector import load_detector
from ovdet.models.loader import load_model
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.recognize.crop import CropEmbedder
from ovdet.recognize.dense import DenseEmbedder
from ovdet.train.feature_cache import ShardedCache
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories

INIT = "shapes-vild-text"
STEPS = 60
# detection RoIs per image (the init's 128 by default): the distillation signal (5 regions per
# image) is the same, the head's classification work a half. Measured, one process: L1 distance
# ratio 0.848 -> 0.862 (bar 0.9), relation error ratio 0.886 -> 0.888 (bar 0.92), 78 s -> 53 s.
ROI_BATCH = 64


def _world(folder):
    generate_world(
        folder / "w",
        WorldConfig(
            seed=21,
            captions=0,
            det_train=64,
            det_val=1,
            det_style=0,
            det_captions=0,
            det_val_uniform=24,
            det_captions_companion=0,
        ),
    )


def _trained(tmp_path_factory, worker_id, irm_weight: float | None):
    """Fine-tuned without distillation (None), with L1 only (0) or with L1 + IRM (15)."""
    root = built_once(tmp_path_factory, worker_id, "rkd-align-world", _world) / "w"
    gt = json.loads((root / "det-train" / "annotations.json").read_text())

    def build_regions(folder):
        clip = load_model("shapes-clip")
        proposer, spec = load_detector(INIT)
        cats = sorted(gt["categories"], key=lambda c: c["id"])
        text = embed_vocabulary(clip, vocabulary_from_categories(cats), "ensemble")
        labeler = ClipScoredLabeler(
            RPNProposals(proposer, spec), DenseEmbedder(clip), text, clip.logit_scale, "rpn"
        )
        dataset = CocoDetection(gt, root / "det-train", spec["base_ids"], spec["side"])
        build_region_cache(labeler, clip, dataset, folder / "regions", 5)

    def train(folder):
        clip = load_model("shapes-clip")
        regions = None
        if irm_weight is not None:  # one region cache for both distillation runs
            shared = built_once(tmp_path_factory, worker_id, "rkd-align-regions", build_regions)
            regions = ShardedCache(shared / "regions")
        cfg = RKDTrainConfig(
            init=INIT,
            steps=STEPS,
            warmup=5,
            checkpoint_every=STEPS,
            irm_weight=irm_weight or 0.0,
            roi_batch=ROI_BATCH,
        )
        train_rkd(gt, root / "det-train", folder / "run", cfg, regions, clip=clip)

    name = {None: "control", 0.0: "l1", 15.0: "irm"}[irm_weight]
    return root, built_once(tmp_path_factory, worker_id, f"rkd-align-{name}", train) / "run"


@torch.no_grad()
def _alignment(root, folder) -> tuple[float, float]:
    """(mean L1 of normalised embeddings, relation error) of the detector's distillation
    embeddings vs CLIP's 1x crops, over det-val-uniform's novel ground-truth boxes."""
    val = json.loads((root / "det-val-uniform" / "annotations.json").read_text())
    model, spec = load_detector(folder)
    crops = CropEmbedder(load_model("shapes-clip"), scales=(1.0,))
    student, teacher = [], []
    for im in val["images"]:
        anns = [
            a
            for a in val["annotations"]
            if a["image_id"] == im["id"] and a["category_id"] in val["ovd"]["novel"]
        ]
        if not anns:
            continue
        image = load_image(root / "det-val-uniform" / im["file_name"])
        xyxy = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
        pixels, box = letterbox(image, spec["side"])
        student.append(model.text_head(model.backbone(pixels), [box.boxes(xyxy)])[0])
        teacher.append(crops.embed(image, xyxy))
    s, t = F.normalize(torch.cat(student), dim=-1), torch.cat(teacher)
    return float((s - t).abs().mean()), float((relation_matrix(s) - relation_matrix(t)).norm())


@pytest.mark.slow(seconds=25)
def test_l1_distillation_moves_unseen_novel_regions_towards_clip(tmp_path_factory, worker_id):
    root, control = _trained(tmp_path_factory, worker_id, None)
    _, l1_only = _trained(tmp_path_factory, worker_id, 0.0)
    c, l1 = _alignment(root, control), _alignment(root, l1_only)
    # measured: L1 distance 0.094 (control) -> 0.081 (L1 only)
    assert l1[0] <= 0.9 * c[0], (c, l1)  # point-wise: closer to CLIP on unseen classes


@pytest.mark.slow(seconds=25)
def test_irm_keeps_the_teachers_geometry_beyond_l1(tmp_path_factory, worker_id):
    """Built in the other order than the L1 test (L1 first), so two workers train the three
    runs side by side."""
    root, l1_only = _trained(tmp_path_factory, worker_id, 0.0)
    _, irm = _trained(tmp_path_factory, worker_id, 15.0)
    l1, both = _alignment(root, l1_only), _alignment(root, irm)
    # measured: relation error 3.31 (L1 only) -> 2.94 (L1 + IRM), control 3.37
    assert both[1] <= 0.92 * l1[1], (l1, both)  # IRM: the teacher's geometry, beyond L1's
