"""ViLD through the real-size code path (the shared run of tests/real_scale.py: a tiny random
transformers ResNet with an FPN and a mask head at 256 px on the shapes world). Measured
effects: base box AP and base mask AP on det-val rise over the first steps (from an untrained
detector's)."""

import json
import math

import pytest
import torch
from real_scale import STEPS

from ovdet.methods.vild.detector import detect_image, load_detector
from ovdet.methods.vild.model import ViLDConfig
from ovdet.methods.vild.train import ViLDTrainConfig, train_vild
from ovdet.models.loader import load_model
from ovdet.ops.masks import rle_encode
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories


def base_ap(
    root, folder, iou_type: str = "bbox", box_masks: bool = False, masks: bool = True
) -> float:
    """AP (percent) of a checkpoint on det-val's base categories, of its boxes or masks (with
    `box_masks`, each mask replaced by its filled box: a mask head that learned only boxes)."""
    from ovdet.eval.detection import evaluate_detections
    from ovdet.eval.recognition import detect_dataset

    val = json.loads((root / "w" / "det-val" / "annotations.json").read_text())
    model, spec = load_detector(folder)
    base = set(spec["base_ids"])
    cats = [c for c in sorted(val["categories"], key=lambda c: c["id"]) if c["id"] in base]
    text = embed_vocabulary(load_model("shapes-clip"), vocabulary_from_categories(cats), "single")
    val = {
        **val,
        "categories": cats,
        "annotations": [a for a in val["annotations"] if a["category_id"] in base],
    }
    detect = lambda image: detect_image(model, spec, image, text)  # noqa: E731
    dets = detect_dataset(val, root / "w" / "det-val", detect, [c["id"] for c in cats], False)
    assert dets and all(("segmentation" in d) == masks for d in dets)  # the mask head's RLE
    for d in dets if box_masks else []:
        filled = torch.zeros(d["segmentation"]["size"], dtype=torch.bool)
        x1, y1, w, h = d["bbox"]
        filled[int(y1) : math.ceil(y1 + h), int(x1) : math.ceil(x1 + w)] = True
        d["segmentation"] = rle_encode(filled)
    return evaluate_detections(val, dets, iou_type=iou_type, protocol="lvis").metrics["AP"]


@pytest.mark.slow(seconds=30)
def test_fpn_detector_learns_base_shapes(fpn_run):
    root, folders = fpn_run
    before, after = base_ap(root, folders[0]), base_ap(root, folders[STEPS])
    # measured: 0.02 -> 6.69 AP after 150 steps of batch 2 (3.78 without the mask head's loss)
    assert after >= before + 2.0, (before, after)
    model, spec = load_detector(folders[STEPS])  # the checkpoint rebuilds offline from its spec
    assert spec["backbone"]["config"]["model_type"] == "resnet"
    assert model.backbone.strides == [4, 8, 16, 32, 64] and spec["rpn"]["sizes"] == [
        32.0,
        64.0,
        128.0,
        256.0,
        512.0,
    ]
    frozen = [n for n, p in model.backbone.named_parameters() if not p.requires_grad]
    assert not frozen  # freeze_at 0
    state = torch.load(folders[STEPS] / "train_state.pt", weights_only=True)
    assert state["step"] == STEPS


@pytest.mark.slow(seconds=15)
def test_mask_head_learns_base_masks(fpn_run):
    root, folders = fpn_run
    before, after = base_ap(root, folders[0], "segm"), base_ap(root, folders[STEPS], "segm")
    boxes = base_ap(root, folders[STEPS], "segm", box_masks=True)
    # measured: mask AP 0.00 -> 9.07; the same detections with their boxes as masks 1.48
    assert after >= before + 4.0 and after >= boxes + 4.0, (before, boxes, after)


def test_init_of_another_backbone_is_refused_naming_both(fpn_run, tmp_path):
    from ovdet.errors import OvdetError

    root, folders = fpn_run
    gt = json.loads((root / "w" / "det-train" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    vild = ViLDConfig(embed_dim=clip.embed_dim, image_weight=0.0, hidden=128)
    cfg = ViLDTrainConfig(steps=1, side=64, init=str(folders[0]), checkpoint_every=1)
    with pytest.raises(OvdetError, match=r"has the backbone .*resnet.* \+ fpn, this run shapes"):
        train_vild(gt, root / "w" / "det-train", tmp_path / "r", clip, "x", [1], vild, cfg)


@pytest.mark.slow(seconds=30)
def test_c4_detector_reads_one_stride_16_map_with_res5_as_its_head(fpn_run, tmp_path):
    """--neck c4: the RPN (15 anchors a location) and RoIAlign on C4, the pretrained fourth stage
    as the RoI head (copied there, not run on the whole image); base AP rises in 150 steps."""
    from real_scale import fpn_config

    from ovdet.detect.c4 import Res5RoIHead
    from ovdet.detect.hf_backbone import load_hf_backbone

    root, _ = fpn_run
    gt = json.loads((root / "w" / "det-train" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    vild = ViLDConfig(embed_dim=clip.embed_dim, image_weight=0.0, hidden=128)
    folders = {}
    for steps in (0, 150):
        cfg = fpn_config(root / "resnet", steps=steps, checkpoint_every=max(1, steps), neck="c4")
        folders[steps] = tmp_path / f"c4-{steps}"
        args = (gt, root / "w" / "det-train", folders[steps], clip, "shapes-clip")
        train_vild(*args, gt["ovd"]["base"], vild, cfg)
    model, spec = load_detector(folders[0])
    assert spec["backbone"]["neck"] == "c4" and isinstance(model.text_head, Res5RoIHead)
    assert model.backbone.stride == 16 and model.rpn.num_anchors == 15
    assert not any(k.startswith("backbone.") and ".3." in k for k in model.state_dict())
    pretrained = load_hf_backbone(str(root / "resnet"), ["stage4"], freeze_at=0).model
    want = pretrained.encoder.stages[3].state_dict()
    got = model.text_head.res5.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # res5 starts from the backbone's
    features = model.backbone(torch.zeros(1, 3, 256, 256))
    assert features.shape[-2:] == (16, 16)
    before, after = base_ap(root, folders[0], masks=False), base_ap(root, folders[150], masks=False)
    assert after >= before + 0.5, (before, after)  # measured 0.004 -> 1.04


def test_detect_and_eval_take_the_fpn_checkpoint_with_masks(fpn_run, tmp_path):
    """The command line on the real-size checkpoint: `ovdet detect --images --gt --eval
    --iou-type segm` writes RLE masks and scores them; `ovdet eval --iou-type segm` agrees."""
    from ovdet.cli.main import main

    root, folders = fpn_run
    val = root / "w" / "det-val"
    out = tmp_path / "results.json"
    args = ["detect", "--images", val, "--gt", val / "annotations.json", "--vocab"]
    args += [val / "annotations.json", "--model", folders[STEPS], "--out", out, "--eval"]
    assert main([str(a) for a in [*args, "--iou-type", "segm", "--protocol", "lvis"]]) == 0
    results = json.loads(out.read_text())
    assert results and all(r["segmentation"]["counts"] for r in results)
    written = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    again = ["eval", "--gt", val / "annotations.json", "--dt", out, "--iou-type", "segm"]
    assert main([str(a) for a in [*again, "--protocol", "lvis", "--out", tmp_path / "e"]]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"] == written
    assert written["AP"] > 0  # all 16 names here (novel ones too), scored on their masks


def test_channels_last_inference_gives_the_same_detections(fpn_run):
    """The fast path (a transformers backbone in channels-last memory with its BatchNorms folded
    and ReLUs in place, as ViLDDetector loads it) against the plain one: the same detections
    above 0.05 to float rounding."""
    from ovdet.methods.vild.detector import ViLDDetector
    from ovdet.recognize.inputs import as_image

    root, folders = fpn_run
    fast = ViLDDetector(folders[STEPS], text_cache=None)
    slow_model, spec = load_detector(folders[STEPS])
    conv = next(m for m in fast.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    from ovdet.detect.frozen_bn import FrozenBatchNorm2d  # and fused for inference

    assert not any(isinstance(m, FrozenBatchNorm2d) for m in fast.model.backbone.modules())
    vocab = "circle, square, triangle, star, moon"
    text = fast.text.embed(vocab)
    compared = 0
    for path in sorted((root / "w" / "det-val" / "images").glob("*.png"))[:6]:
        image = as_image(str(path))
        a = fast.detect(image, vocab)
        b = detect_image(slow_model, spec, image, text)
        ka, kb = int((a.scores >= 0.05).sum()), int((b.scores >= 0.05).sum())
        assert ka == kb and torch.equal(a.labels[:ka], b.labels[:kb])
        assert torch.allclose(a.scores[:ka], b.scores[:kb], atol=1e-4)
        assert torch.allclose(a.xyxy[:ka], b.xyxy[:kb], atol=1e-2)
        compared += ka
    assert compared > 0, compared
