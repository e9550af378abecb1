import json
import math

import pytest
import torch
import torch.nn.functional as F

from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.models.loader import load_model
from ovdet.train.shapes_clip import (
    ClipTrainConfig,
    multi_positive_loss,
    positive_matrix,
    train_shapes_clip,
)


def rec(objects, mentions):
    return {
        "objects": [{"category": c, "colour": k} for c, k in objects],
        "mentions": [{"category": c, "colour": k} for c, k in mentions],
    }


def test_positive_matrix_by_hand():
    records = [
        rec([("star", "red")], [("star", "red")]),
        rec([("star", "blue")], [("star", None)]),  # "a star" describes any star
        rec([("ring", "red"), ("star", "red")], [("star", None), ("ring", "red")]),
    ]
    assert positive_matrix(records).int().tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_multi_positive_loss_reduces_to_clip_loss():
    logits = torch.randn(5, 5)
    want = (
        F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.t(), torch.arange(5))
    ) / 2
    torch.testing.assert_close(multi_positive_loss(logits, torch.eye(5, dtype=torch.bool)), want)


@pytest.mark.slow(seconds=25)
def test_short_training_learns_image_text_matching(tmp_path):
    world = generate_world(
        tmp_path / "w",
        WorldConfig(
            seed=5,
            captions=400,
            det_train=1,
            det_val=1,
            det_style=0,
            det_captions=0,
            det_val_uniform=0,
            det_captions_companion=0,
        ),
    )
    folder = train_shapes_clip(
        world, tmp_path / "m", ClipTrainConfig(steps=30, batch_size=48, lr=3e-3, warmup=10)
    )
    trained = load_model(str(folder))
    untrained_cfg = trained.model.config
    from ovdet.models.shapes_clip import ShapesClip, ShapesClipModel

    torch.manual_seed(0)
    untrained = ShapesClip(ShapesClipModel(untrained_cfg).eval(), trained.tokenizer)
    from ovdet.eval.shapes_clip import SHAPES_VOCAB, single_object_images
    from ovdet.recognize.core import classify_images
    from ovdet.vocab.embed import TextEmbedder

    images, _, colours = single_object_images(77, 160, 64)
    want = torch.tensor([SHAPES_VOCAB.attributes.index(c) for c in colours])

    def colour_accuracy(model):
        text = TextEmbedder(model, "single").embed_attributes(SHAPES_VOCAB)
        return (classify_images(model, images, text).argmax(1) == want).float().mean().item()

    before, after = colour_accuracy(untrained), colour_accuracy(trained)
    # 8 colours: chance is 12.5%; 30 small steps already learn colour words well above it
    # (measured 0.94)
    assert after > before + 0.25 and after > 0.5, (before, after)


def test_partial_captions_are_left_out_not_negatives():
    records = [
        rec([("star", "red"), ("ring", "blue")], [("star", None), ("ring", None)]),
        rec([("star", "red")], [("star", "red")]),
    ]
    from ovdet.train.shapes_clip import caption_matrices

    positive, partial = caption_matrices(records)
    # "a red star" is true of image 0 but does not describe it: partial, not positive
    assert positive.int().tolist() == [[1, 0], [0, 1]]
    assert partial.int().tolist() == [[0, 1], [0, 0]]
    logits = torch.tensor([[2.0, 5.0], [0.0, 3.0]])
    ignored = multi_positive_loss(logits, positive, partial)
    # image -> text: image 0 sees only its own caption (loss 0), image 1 both: log(1 + e^-3);
    # text -> image: caption 0 sees both images: log(1 + e^-2), caption 1 only image 1 (0)
    want = torch.tensor((math.log1p(math.exp(-3)) / 2 + math.log1p(math.exp(-2)) / 2) / 2)
    torch.testing.assert_close(ignored, want)
    assert multi_positive_loss(logits, positive) > ignored  # as negatives they cost more


def test_partial_captions_as_positives_and_the_two_rules_exclude_each_other():
    with pytest.raises(ValueError, match="choose one"):
        ClipTrainConfig(ignore_partial=True, partial_positive=True)
    with pytest.raises(ValueError, match="label-weight must be >= 0, got -1.0"):
        ClipTrainConfig(label_weight=-1.0)
    records = [
        rec([("star", "red"), ("ring", "blue")], [("star", None), ("ring", None)]),
        rec([("star", "red")], [("star", "red")]),
    ]
    from ovdet.train.shapes_clip import caption_matrices

    positive, partial = caption_matrices(records)
    logits = torch.tensor([[2.0, 5.0], [0.0, 3.0]])
    # "a red star" as a second positive of image 0: image 0's loss is the mean of -log p over
    # both captions; caption 1's text -> image loss sees images 0 and 1 as positives
    both = multi_positive_loss(logits, positive | partial)
    img0 = -(F.log_softmax(logits[0], 0)).mean()
    img1 = -F.log_softmax(logits[1], 0)[1]
    txt0 = -F.log_softmax(logits[:, 0], 0)[0]
    txt1 = -(F.log_softmax(logits[:, 1], 0)).mean()
    torch.testing.assert_close(both, ((img0 + img1) / 2 + (txt0 + txt1) / 2) / 2)


def test_label_loss_by_hand_makes_every_shown_shape_an_equal_answer():
    from ovdet.data.shapes.world import CATEGORIES
    from ovdet.train.shapes_clip import label_loss, label_matrix, label_prompts

    records = [rec([("star", "red"), ("ring", "blue")], []), rec([("circle", "red")], [])]
    present = label_matrix(records)
    names = [n for n, _, _ in CATEGORIES]
    assert present.shape == (2, len(names))
    assert [names[k] for k in present[0].nonzero().flatten()] == sorted(
        ["star", "ring"], key=names.index
    )
    assert present[1].nonzero().flatten().tolist() == [names.index("circle")]
    logits = torch.randn(2, len(names))
    logp = F.log_softmax(logits, 1)
    want = (-(logp[0, present[0]].mean()) - logp[1, names.index("circle")]) / 2
    torch.testing.assert_close(label_loss(logits, present), want)
    # the minimum puts half the probability on each shape of image 0
    target = torch.full((1, len(names)), -30.0)
    target[0, present[0]] = 0.0
    near = label_loss(target, present[:1])
    assert abs(float(near) - math.log(2)) < 1e-6
    prompts = label_prompts(torch.Generator().manual_seed(0))
    assert len(prompts) == len(names) and all(
        any(n in p for n in (name, *syn))
        for p, (name, _, syn) in zip(prompts, CATEGORIES, strict=True)
    )


@pytest.mark.parametrize("trainer", ["clip", "sam"])
def test_training_refuses_an_out_folder_of_other_files_before_any_work(tmp_path, trainer):
    """Both trainers replace `--out` whole (atomically), so a folder of someone's files is
    refused in one line before the data loads or a step runs; an earlier model folder is fine."""
    from ovdet.errors import OvdetError
    from ovdet.io.atomic import check_replaceable
    from ovdet.train.shapes_sam import SamTrainConfig, train_shapes_sam

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OvdetError, match=r"--out .*mine holds other files"):
        if trainer == "clip":  # the data folder does not exist: the refusal comes first
            train_shapes_clip(tmp_path / "no-data", mine, ClipTrainConfig(steps=1))
        else:
            train_shapes_sam(mine, SamTrainConfig(steps=1))
    assert (mine / "notes.txt").read_text() == "keep me"
    if trainer == "clip":  # the command line too, with two worlds: one line, nothing written
        from ovdet.cli.main import main

        argv = ["shapes", "train-clip", "--data", "a", "b", "--out", str(mine)]
        assert main(argv) != 0 and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OvdetError, match="is a file, not a folder"):
        check_replaceable(tmp_path / "file", "config.json", "model")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    for ok in (tmp_path / "new", tmp_path / "model"):
        check_replaceable(ok, "config.json", "model")


def test_caption_splits_of_several_worlds_join_in_order_and_sizes_must_agree(tmp_path):
    from ovdet.errors import OvdetError
    from ovdet.train.shapes_clip import load_caption_splits

    zeros = dict(det_train=0, det_val=0, det_style=0, det_captions=0, det_val_uniform=0)
    worlds = [
        generate_world(
            tmp_path / f"w{k}",
            WorldConfig(seed=k, captions=n, det_captions_companion=0, caption_size=side, **zeros),
        )
        for k, (n, side) in enumerate([(3, 64), (2, 64), (2, 32)])
    ]
    images, records = load_caption_splits([worlds[1] / "captions", worlds[0] / "captions"])
    assert images.shape == (5, 3, 64, 64)
    want = [json.loads((w / "captions" / "captions.json").read_text()) for w in worlds[:2]]
    assert records == want[1] + want[0]
    with pytest.raises(OvdetError, match="different image sizes.*64 px.*32 px"):
        load_caption_splits([worlds[0] / "captions", worlds[2] / "captions"])
    with pytest.raises(OvdetError, match="no caption split"):
        load_caption_splits([])
    bad = tmp_path / "bad" / "captions"
    bad.mkdir(parents=True)
    for text, why in [
        ('{"a": 1}', "expected a non-empty list of caption records, got dict"),
        ("[]", "got list \\(empty\\)"),
        ('[{"file_name": "a.png"}]', "record 0 is not a shapes-world caption record"),
        ("[1,", "is not valid JSON"),
    ]:
        (bad / "captions.json").write_text(text)
        with pytest.raises(OvdetError, match=why):
            load_caption_splits([bad])
    with pytest.raises(OvdetError, match="not found"):
        load_caption_splits([tmp_path / "missing"])
