"""COCO captions files and the image-level labels a caption names (RKD's PIS, CoDet)."""

import json

import pytest

from ovdet.data.captions import caption_labels, load_captions
from ovdet.errors import FormatError
from ovdet.types import Vocabulary

VOCAB = Vocabulary(
    ("circle", "half circle", "star", "traffic cone", "bus"),
    ((), ("semicircle",), (), ("cone",), ()),
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("A red half circle next to two stars.", [1, 2]),  # not "circle": the longer name wins
        ("a circle and a semicircle", [0, 1]),
        ("Traffic cones, and buses!", [3, 4]),  # plurals
        ("a cone-shaped hat", [3]),  # punctuation splits words
        ("a starfish in a circus", []),  # whole words only
        ("", []),
    ],
)
def test_caption_labels(text, want):
    assert caption_labels(text, VOCAB) == want


def _write(tmp_path, data):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(data))
    return path


def test_load_captions_groups_captions_per_image(tmp_path):
    path = _write(
        tmp_path,
        {
            "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [
                {"image_id": 2, "caption": "a star"},
                {"image_id": 2, "caption": "one star", "id": 9},
            ],
        },
    )
    (item,) = load_captions(path)  # image 1 has no caption: left out
    assert item.image_id == 2 and item.file_name == "b.png"
    assert item.captions == ("a star", "one star")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "object with an 'images' list"),
        ({"images": []}, "'annotations' list"),
        ({"images": [{"id": 1}], "annotations": []}, "image 0 needs 'id' and 'file_name'"),
        (
            {"images": [{"id": 1, "file_name": "a"}], "annotations": [{"image_id": 1}]},
            "caption 0 needs",
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a"}],
                "annotations": [{"image_id": 7, "caption": "x"}],
            },
            "image ids not in 'images': \\[7\\]",
        ),
        ({"images": [{"id": 1, "file_name": "a"}], "annotations": []}, "no image has a caption"),
    ],
)
def test_bad_captions_files_get_one_line(tmp_path, data, message):
    with pytest.raises(FormatError, match=message):
        load_captions(_write(tmp_path, data))
