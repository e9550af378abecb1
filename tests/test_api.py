import pytest
import torch

import ovdet
from ovdet.api import Detector, Recognizer, checkpoint_kind, load
from ovdet.errors import WeightsNotFoundError
from ovdet.types import Regions


@pytest.mark.parametrize(
    "name, kind",
    [
        ("shapes-clip", "clip"),
        ("shapes-sam", "sam"),
        ("shapes-vild", "vild"),
        ("shapes-regionspot", "regionspot"),
    ],
)
def test_load_returns_what_the_checkpoint_says_it_is(name, kind):
    assert checkpoint_kind(name) == kind
    model = load(name, text_cache=None) if kind in ("vild", "regionspot") else load(name)
    if kind == "vild":
        assert isinstance(model, Detector) and isinstance(model, Recognizer)  # RoI heads on boxes
    elif kind == "regionspot":
        assert isinstance(model, Recognizer)
    elif kind == "clip":
        assert isinstance(model, ovdet.VisionLanguageModel)
    else:
        assert isinstance(model, ovdet.SamBackend)


def test_missing_folders_are_one_line(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no such checkpoint folder"):
        load(str(tmp_path / "nope"))


def test_detector_and_recognizers_speak_regions_and_vocabularies():
    import numpy as np

    from ovdet.data.shapes.world import render_scene
    from ovdet.eval.shapes_clip import SHAPES_VOCAB
    from ovdet.models.loader import load_model
    from ovdet.ops.masks import masks_to_boxes
    from ovdet.recognize.clip_recognizer import ClipRecognizer
    from ovdet.recognize.core import recognize
    from ovdet.recognize.dense import DenseEmbedder
    from ovdet.vocab.embed import TextEmbedder

    scene = render_scene(np.random.default_rng(5), (128, 128), max_objects=3, min_objects=2)
    image = torch.from_numpy(scene.image).permute(2, 0, 1)
    boxes = masks_to_boxes(np.stack(scene.masks))
    clip = load_model("shapes-clip")
    rec = ClipRecognizer(clip, "dense", "ensemble", None)
    got = rec.recognize_regions(image, Regions(boxes, (128, 128)), SHAPES_VOCAB)
    want = recognize(
        image,
        boxes,
        TextEmbedder(clip, "ensemble").embed(SHAPES_VOCAB),
        DenseEmbedder(clip),
        clip.logit_scale,
    )
    assert torch.equal(got.labels, want.labels) and torch.allclose(got.scores, want.scores)
    detected = load("shapes-vild", text_cache=None).detect(image, SHAPES_VOCAB)
    assert detected.image_size == (128, 128) and (detected.labels < len(SHAPES_VOCAB)).all()
    named = load("shapes-regionspot", text_cache=None).recognize_regions(
        image, Regions(boxes, (128, 128)), SHAPES_VOCAB
    )
    assert len(named) == len(boxes) and named.masks.shape == (len(boxes), 128, 128)


def test_methods_take_paths_arrays_inline_vocabularies_and_plain_boxes(tmp_path):
    """What a user types first: `detect("photo.png", "circle, star")`, boxes as lists. Each
    form gives what the typed form gives; a vocabulary of the wrong type is one line."""
    import numpy as np
    from PIL import Image

    from ovdet.data.shapes.world import render_scene
    from ovdet.errors import VocabularyError
    from ovdet.vocab.parse import parse_vocabulary

    scene = render_scene(np.random.default_rng(5), (128, 128), max_objects=3, min_objects=2)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
    vocab = parse_vocabulary("circle, star|pentagram, crescent")
    detector = load("shapes-vild", text_cache=None)
    want = detector.detect(image, vocab)
    for img in (str(tmp_path / "scene.png"), scene.image, Image.fromarray(scene.image)):
        for words in ("circle, star|pentagram, crescent", ["circle", "star|pentagram", "crescent"]):
            got = detector.detect(img, words)
            assert torch.equal(got.xyxy, want.xyxy) and torch.equal(got.labels, want.labels)
    boxes = [[10.0, 10.0, 60.0, 60.0], [-5.0, 40.0, 90.0, 130.0]]  # the second clipped
    named = detector.recognize_regions(
        image, Regions(torch.tensor(boxes).clamp(0, 128), (128, 128)), vocab
    )
    plain = detector.recognize_regions(
        str(tmp_path / "scene.png"), boxes, "circle, star|pentagram, crescent"
    )
    assert torch.equal(plain.xyxy, named.xyxy) and torch.equal(plain.labels, named.labels)
    for bad in (5, ["circle", 3], []):
        with pytest.raises(VocabularyError):
            detector.detect(image, bad)


def test_ovdet_recognize_is_the_function_after_its_subpackage_is_imported():
    """The README's order: `from ovdet import DenseEmbedder` (which imports the subpackage
    `ovdet.recognize`), then `ovdet.recognize(image, boxes, text, embedder, scale)`."""
    import ovdet.recognize.dense  # noqa: F401
    from ovdet import DenseEmbedder, TextEmbedder
    from ovdet.models.loader import load_model

    clip = load_model("shapes-clip")
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    text = TextEmbedder(clip).embed(ovdet.parse_vocabulary("circle, star"))
    named = ovdet.recognize(image, torch.tensor([[2.0, 2, 20, 20]]), text, DenseEmbedder(clip), 100)
    assert len(named) == 1 and named.data["class_scores"].shape == (1, 2)
