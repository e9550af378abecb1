"""The measured effect RKD exists for: distilling CLIP's region embeddings (L1 + IRM) into a
ViLD-text detector's RoI head raises its novel AP over the same fine-tuning without them.

Both runs fine-tune the bundled base-trained `shapes-vild-text` (backbone and RPN frozen, as the
reproduction does) for the same steps on the same fresh det-train images; the distilled regions
are the top-5 proposals of that checkpoint's own RPN (cheap to compute; the reproduction's rows
compare proposal sources). Scored with the LVIS protocol on a fresh uniform val set, where a
third of the objects are novel shapes."""

import json

import pytest
import torch
from once import built_once

from ovdet.data.coco import CocoDetection
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.eval.recognition import evaluate_detector
from ovdet.methods.rkd.cache import build_region_cache
from ovdet.methods.rkd.labelers import ClipScoredLabeler, RPNProposals
from ovdet.methods.rkd.train import RKDTrainConfig, train_rkd
from ovdet.methods.vild.detector import detect_image, load_detector
from ovdet.models.loader import load_model
from ovdet.recognize.dense import DenseEmbedder
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories

INIT = "shapes-vild-text"
STEPS = 150


def _world(folder):
    generate_world(
        folder / "w",
        WorldConfig(
            seed=21,
            captions=0,
            det_train=160,
            det_val=1,
            det_style=0,
            det_captions=0,
            det_val_uniform=80,
        ),
    )


def _novel_ap(tmp_path_factory, worker_id, irm: bool) -> float:
    root = built_once(tmp_path_factory, worker_id, "rkd-learns-world", _world) / "w"
    gt = json.loads((root / "det-train" / "annotations.json").read_text())
    val = json.loads((root / "det-val-uniform" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    text = embed_vocabulary(clip, vocabulary_from_categories(cats), "ensemble")
    proposer, spec = load_detector(INIT)

    def train(folder):
        regions = None
        if irm:
            labeler = ClipScoredLabeler(
                RPNProposals(proposer, spec), DenseEmbedder(clip), text, clip.logit_scale, "rpn"
            )
            dataset = CocoDetection(gt, root / "det-train", spec["base_ids"], spec["side"])
            regions = build_region_cache(labeler, clip, dataset, folder / "regions", 5)
        cfg = RKDTrainConfig(init=INIT, steps=STEPS, warmup=10, checkpoint_every=STEPS)
        train_rkd(gt, root / "det-train", folder / "run", cfg, regions)

    name = "rkd-learns-distilled" if irm else "rkd-learns-control"
    folder = built_once(tmp_path_factory, worker_id, name, train) / "run"
    model, s = load_detector(folder)
    novel = torch.tensor([c["id"] in gt["ovd"]["novel"] for c in cats])
    row = evaluate_detector(
        val,
        root / "det-val-uniform",
        lambda image: detect_image(model, s, image, text, novel),
        [c["id"] for c in cats],
    )
    return row["APr"]


@pytest.mark.slow(seconds=30)
def test_rkd_raises_novel_ap_over_the_same_fine_tuning(tmp_path_factory, worker_id):
    control = _novel_ap(tmp_path_factory, worker_id, irm=False)
    distilled = _novel_ap(tmp_path_factory, worker_id, irm=True)
    print("novel AP", control, distilled)
    assert distilled >= control + 3.0, (control, distilled)
