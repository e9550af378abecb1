"""RKD's pseudo-labelers: proposals files, the shapes world's stand-in, OWLv2 (tiny, offline)."""

import json
import string

import numpy as np
import pytest
import torch

from ovdet.data.shapes.generate import annotations_of, category_records
from ovdet.data.shapes.world import render_scene
from ovdet.errors import FormatError, WeightsNotFoundError
from ovdet.methods.rkd.labelers import (
    Owlv2Labeler,
    ProposalsFile,
    make_labeler,
    top_proposals,
)
from ovdet.models.loader import load_model
from ovdet.ops.boxes import box_iou, xywh_to_xyxy
from ovdet.vocab.parse import vocabulary_from_categories


def test_proposals_file_orders_by_score_and_refuses_foreign_ids(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": 3, "bbox": [0, 0, 10, 10], "score": 0.2},
                {"image_id": 3, "bbox": [5, 5, 10, 20], "score": 0.9, "category_id": 1},
                {"image_id": 4, "bbox": [1, 1, 2, 2]},
            ]
        )
    )
    source = ProposalsFile(path)
    boxes, scores = source(torch.zeros(3, 32, 32, dtype=torch.uint8), 3)
    assert boxes.tolist() == [[5, 5, 15, 25], [0, 0, 10, 10]]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.2]))
    assert source(torch.zeros(3, 8, 8), 99)[0].shape == (0, 4)  # an image without proposals
    with pytest.raises(FormatError, match="no proposals for any training image"):
        source.check_covers([1, 2])
    path.write_text(json.dumps([{"image_id": 3, "bbox": [0, 0, "w", 1]}]))
    with pytest.raises(FormatError, match="entry 0 has bbox"):
        ProposalsFile(path)


def test_top_proposals_drops_empty_boxes_then_nms_then_k():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [5, 5, 5, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 1.0])
    kept, s = top_proposals(boxes, scores, k=5)
    assert kept.tolist() == [[0, 0, 10, 10], [20, 20, 30, 30]]
    torch.testing.assert_close(s, torch.tensor([0.9, 0.7]))
    assert len(top_proposals(boxes, scores, k=1)[0]) == 1


def test_stand_in_finds_every_named_shape_of_a_drawn_scene():
    """The shapes world's stand-in (SAM everything + CLIP) gives each named shape its own box."""
    vocab = vocabulary_from_categories(category_records())
    labeler = make_labeler("shapes", vocab, load_model("shapes-clip"))
    hits = total = 0
    for seed in range(4):
        scene = render_scene(np.random.default_rng([5, seed]), (128, 128), 3, uniform=True)
        anns = annotations_of(scene, 1, 1)
        image = torch.from_numpy(scene.image).permute(2, 0, 1)
        labels = [a["category_id"] - 1 for a in anns]
        boxes, scores = labeler.best_boxes(image, seed, labels)
        assert boxes.shape == (len(labels), 4) and scores.shape == (len(labels),)
        truth = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
        hits += int((box_iou(boxes, truth).diagonal() >= 0.5).sum())
        total += len(labels)
    assert hits >= 0.75 * total, (hits, total)  # measured 10 of 11


def _tiny_owlv2(folder):
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection

    # OWL treats a query whose first token id is 0 as padding: keep id 0 for a pad token
    vocab = {"<pad>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in (c for c in string.printable if not c.isspace()):
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)
    Owlv2ForObjectDetection(config).eval().save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[], pad_token="<pad>").save_pretrained(folder)
    return folder


def test_owlv2_labeler_runs_offline_on_a_tiny_random_model(tmp_path):
    from ovdet.models.owlv2 import Owlv2

    owl = Owlv2.from_pretrained(str(_tiny_owlv2(tmp_path / "owl")))
    image = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)  # wide: padded below
    boxes, objectness = owl.objectness(image)
    assert boxes.shape == (16, 4) and objectness.shape == (16,)  # (32 / 8)^2 patches
    assert (boxes[:, 2:] >= boxes[:, :2]).all() and boxes[:, 2].max() <= 80
    assert boxes[:, 3].max() <= 48 and ((objectness >= 0) & (objectness <= 1)).all()
    labeler = Owlv2Labeler(owl, ["cat", "traffic cone", "dog"])
    best, scores = labeler.best_boxes(image, 0, [2, 0])
    assert best.shape == (2, 4) and scores.shape == (2,)
    _, probs = owl.query(image, ["every dog", "every cat"])
    torch.testing.assert_close(scores, probs.max(0).values)  # the top-1 box per query
    assert labeler.best_boxes(image, 0, [])[0].shape == (0, 4)


def test_owlv2_boxes_map_from_the_padded_square_to_image_pixels():
    from ovdet.models.owlv2 import Owlv2

    owl = Owlv2.__new__(Owlv2)
    # an 60 x 120 image padded to 120 x 120: relative (0.5, 0.25, 0.5, 0.5) is x 30-90, y 0-60
    out = owl._boxes(torch.tensor([[0.5, 0.25, 0.5, 0.5], [0.9, 0.9, 0.4, 0.4]]), (60, 120))
    assert out.tolist() == [[30, 0, 90, 60], [84, 60, 120, 60]]  # the second clipped to the image


def test_missing_owlv2_weights_give_one_line(tmp_path, monkeypatch):
    from ovdet.models.owlv2 import Owlv2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError) as info:
        Owlv2.from_pretrained("owlv2-base")
    assert "\n" not in str(info.value) and "google/owlv2-base-patch16-ensemble" in str(info.value)
