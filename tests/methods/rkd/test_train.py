"""RKD's trainer: weight transfer keeps W_D frozen, a killed run resumes exactly, the checkpoint
detects through the ViLD loader, and the CLI trains on user files (proposals JSON + captions)."""

import json

import pytest
import torch
from resume import assert_resumes
from safetensors.torch import load_file

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.data.coco import CocoDetection
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.methods.rkd.cache import build_pseudo_box_cache, build_region_cache
from ovdet.methods.rkd.labelers import ClipScoredLabeler, RPNProposals
from ovdet.methods.rkd.train import RKDTrainConfig, train_rkd
from ovdet.methods.vild.detector import ViLDDetector, load_detector
from ovdet.models.loader import load_model
from ovdet.recognize.dense import DenseEmbedder
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories

INIT = "shapes-vild-text"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small world and its RKD caches, labelled by the bundled ViLD-text's RPN + shapes-clip."""
    root = tmp_path_factory.mktemp("rkd")
    world = generate_world(
        root / "w",
        WorldConfig(
            seed=8,
            captions=0,
            det_train=12,
            det_val=1,
            det_style=0,
            det_captions=8,
            det_val_uniform=0,
            det_captions_companion=0,
        ),
    )
    gt = json.loads((world / "det-train" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    vocab = vocabulary_from_categories(sorted(gt["categories"], key=lambda c: c["id"]))
    text = embed_vocabulary(clip, vocab, "ensemble")
    proposer, spec = load_detector(INIT)
    labeler = ClipScoredLabeler(
        RPNProposals(proposer, spec), DenseEmbedder(clip), text, clip.logit_scale, "rpn"
    )
    dataset = CocoDetection(gt, world / "det-train", spec["base_ids"], spec["side"])
    items = load_captions(world / "det-captions" / "captions.json")
    captions = CaptionDataset(items, world / "det-captions", spec["side"])
    return {
        "gt": gt,
        "images": world / "det-train",
        "regions": build_region_cache(labeler, clip, dataset, root / "regions", 5),
        "captions": captions,
        "pseudo": build_pseudo_box_cache(labeler, captions, vocab, root / "pseudo"),
        "caption_regions": build_region_cache(labeler, clip, captions, root / "caption-regions", 5),
        "caption_text": text,
        "world": world,
    }


def run(setup, out, stop=None, caption_regions=None, **kw):
    cfg = RKDTrainConfig(
        init=INIT, steps=6, batch_size=2, warmup=1, checkpoint_every=2, pseudo_threshold=0.0, **kw
    )
    keys = ("regions", "captions", "pseudo", "caption_text")
    return train_rkd(
        setup["gt"],
        setup["images"],
        out,
        cfg,
        **{k: setup[k] for k in keys},
        stop=stop,
        caption_regions=caption_regions,
    )


def test_weight_transfer_trains_around_a_frozen_w_d(setup, tmp_path):
    folder = run(setup, tmp_path / "wt", weight_transfer=True)
    init = load_file(_folder(INIT) / "model.safetensors")
    after = load_file(folder / "model.safetensors")
    for k in ("text_head.embed.weight", "text_head.embed.bias"):
        torch.testing.assert_close(after[k].float(), init[k].float(), msg=k)  # W_D frozen
    assert not torch.equal(
        after["transfer.fc2.weight"], torch.zeros_like(after["transfer.fc2.weight"])
    )
    assert not torch.equal(
        after["text_head.fc.1.weight"].float(), init["text_head.fc.1.weight"].float()
    )
    for k in after:  # the backbone and RPN are the ViLD-text checkpoint's
        if k.startswith(("backbone.", "rpn.")):
            torch.testing.assert_close(after[k].float(), init[k].float(), msg=k)


def test_train_backbone_trains_backbone_and_rpn_but_keeps_batchnorm_statistics(setup, tmp_path):
    """The official setting: the backbone's convolutions and the RPN move (box batches carry the
    RPN's losses); BatchNorm's running statistics stay the init's (FrozenBN)."""
    init = load_file(_folder(INIT) / "model.safetensors")
    after = load_file(run(setup, tmp_path / "bb", train_backbone=True) / "model.safetensors")
    moved = {k for k in after if not torch.equal(after[k].float(), init[k].float())}
    convs = [k for k in init if k.startswith("backbone.") and k.endswith("weight")]
    assert convs and set(convs) <= moved
    assert any(k.startswith("rpn.") for k in moved)
    for k in init:
        if k.startswith("backbone.") and k.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(after[k].float(), init[k].float(), msg=k)


def _folder(name):
    from ovdet.models.bundled import checkpoint_folder

    return checkpoint_folder(name)


def test_resume_after_a_kill_equals_an_uninterrupted_run(setup, tmp_path):
    resumed = assert_resumes(
        lambda out, stop: run(setup, out, stop, irm_weight=15.0), tmp_path, 6, kill_at=3
    )
    with pytest.raises(Exception, match="another configuration"):
        run(setup, resumed, irm_weight=0.0)


@pytest.mark.parametrize("form", ["sigmoid", "softmax"])
def test_classification_form_is_the_checkpoints_rule(setup, tmp_path, form):
    """sigmoid (the official code's): per-class sigmoid(50 cos), no background; softmax
    (ViLD's): the learned background competes and its column is dropped."""
    import torch.nn.functional as F

    roi_batch = 16 if form == "sigmoid" else 0  # 0: the init's RoIs per image (128)
    model, spec = load_detector(
        run(setup, tmp_path / form, classification=form, roi_batch=roi_batch)
    )
    assert spec["vild"]["classification"] == form
    assert spec["vild"]["roi_batch"] == (roi_batch or 128) == model.config.roi_batch
    emb, text = torch.randn(5, model.config.embed_dim), torch.randn(3, model.config.embed_dim)
    cos = F.normalize(emb, dim=-1) @ F.normalize(text, dim=-1).t()
    if form == "sigmoid":
        want = (cos * 50).sigmoid()
    else:
        bg = F.normalize(emb, dim=-1) @ F.normalize(model.classifier.background, dim=0)
        want = (torch.cat([bg[:, None], cos], 1) / 0.01).softmax(-1)[:, 1:]
    torch.testing.assert_close(model.class_probabilities(emb, text), want)


def test_caption_images_are_distilled_only_when_asked(setup, tmp_path):
    """`distill_captions` adds L1 + IRM on the caption images' own proposals in PIS batches (the
    official code's image-label batches): W_D ends elsewhere than PIS + box distillation alone."""
    plain = run(setup, tmp_path / "plain", irm_weight=15.0)
    both = run(
        setup,
        tmp_path / "both",
        irm_weight=15.0,
        distill_captions=True,
        caption_regions=setup["caption_regions"],
    )
    a, b = load_file(plain / "model.safetensors"), load_file(both / "model.safetensors")
    assert not torch.equal(a["text_head.embed.weight"], b["text_head.embed.weight"])
    with pytest.raises(Exception, match="region cache"):
        run(setup, tmp_path / "missing", distill_captions=True)


def test_unknown_classification_is_refused():
    with pytest.raises(Exception, match="classification must be one of"):
        RKDTrainConfig(classification="hinge")


def test_checkpoint_detects_any_vocabulary(setup, tmp_path):
    from ovdet.api import checkpoint_kind
    from ovdet.io.images import load_image
    from ovdet.types import Vocabulary

    folder = run(setup, tmp_path / "d", weight_transfer=True)
    assert json.loads((folder / "spec.json").read_text())["kind"] == "rkd"
    assert checkpoint_kind(str(folder)) == "vild"  # the ViLD family: `ovdet detect` loads it
    detector = ViLDDetector(folder, text_cache=None)
    image = load_image(setup["images"] / "images" / "000000.png")
    regions = detector.detect(image, Vocabulary(("star", "ring", "bolt")))
    assert len(regions) and regions.labels.max() < 3


def test_cli_trains_on_a_proposals_file_and_captions(setup, tmp_path, capsys):
    from ovdet.cli.main import main

    gt, world = setup["gt"], setup["world"]
    proposals = [  # class-agnostic: the base objects' boxes and one fixed box per image
        {"image_id": a["image_id"], "bbox": a["bbox"], "score": 1.0} for a in gt["annotations"]
    ] + [{"image_id": im["id"], "bbox": [8, 8, 40, 40], "score": 0.5} for im in gt["images"]]
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps(proposals))
    args = [
        "train", "rkd",
        "--gt", str(world / "det-train" / "annotations.json"),
        "--images", str(world / "det-train"),
        "--captions", str(world / "det-captions" / "captions.json"),
        "--pseudo-labeler", str(path),
        "--init", INIT,
        "--out", str(tmp_path / "run"),
        "--steps", "4",
        "--batch-size", "2",
        "--pseudo-threshold", "0",
        "--irm-weight", "15",
    ]  # fmt: skip
    assert main(args) == 0
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["rkd"]["distill"] and spec["rkd"]["pis"] and spec["rkd"]["steps"] == 4
    at = args.index("--pseudo-labeler") + 1
    bad = [*args[:at], str(tmp_path / "missing.json"), *args[at + 1 :]]
    assert main(bad) != 0
    assert "JSON file not found" in capsys.readouterr().err
    # caption images to distil need captions
    at = args.index("--captions")
    no_captions = [*args[:at], *args[at + 2 :], "--distill-captions", "--out", str(tmp_path / "c")]
    assert main(no_captions) != 0
    assert "--distill-captions distils the caption images" in capsys.readouterr().err


def test_region_cache_refuses_a_proposals_file_for_other_images(setup, tmp_path):
    """The check lives in the cache builder, so detection and caption images both get it."""
    from ovdet.errors import FormatError
    from ovdet.methods.rkd.labelers import make_labeler

    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"image_id": 10**6, "bbox": [0, 0, 8, 8], "score": 1.0}]))
    clip = load_model("shapes-clip")
    vocab = vocabulary_from_categories(sorted(setup["gt"]["categories"], key=lambda c: c["id"]))
    labeler = make_labeler(str(path), vocab, clip, "ensemble")
    with pytest.raises(FormatError, match="no proposals for any training image"):
        build_region_cache(labeler, clip, setup["captions"], tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.safetensors"))
