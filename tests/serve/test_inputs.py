"""Request validation of `ovdet serve`, without models: images, vocabularies, boxes, points."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")

from synthetic import png_header_only  # noqa: E402

from ovdet.serve import inputs  # noqa: E402
from ovdet.serve.limits import Limits, RequestError  # noqa: E402

LIMITS = Limits(upload_bytes=50_000, pixels=1_000_000, vocabulary=5, name_chars=12, prompts=3)


def png(width: int = 8, height: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def status(call) -> int:
    with pytest.raises(RequestError) as e:
        call()
    assert "\n" not in e.value.message and e.value.message
    return e.value.status


def test_images_decode_or_are_refused_by_bytes_pixels_and_format():
    assert inputs.read_image(png(), "a.png", LIMITS).shape == (3, 6, 8)
    assert status(lambda: inputs.read_image(png_header_only(100_000, 100_000), "b", LIMITS)) == 413
    assert status(lambda: inputs.read_image(png(1001, 1000), "big", LIMITS)) == 413
    assert status(lambda: inputs.read_image(b"x" * 60_000, "long", LIMITS)) == 413
    for bad in (b"", b"not an image", png()[:40], b"GIF89a" + b"\0" * 20):
        assert status(lambda bad=bad: inputs.read_image(bad, "bad", LIMITS)) == 400


def test_vocabulary_is_inline_only_and_capped(tmp_path):
    secret = tmp_path / "names.txt"
    secret.write_text("password\n")
    vocab = inputs.read_vocabulary(str(secret), Limits())  # a path is a class name, never read
    assert vocab.names == (str(secret),)
    assert inputs.read_vocabulary("cat|kitty, dog", LIMITS).synonyms == (("kitty",), ())
    for bad, code in (
        ("", 422),
        (" , ", 422),
        ("cat,,dog", 422),
        ("a, b, c, d, e, f", 413),
        ("a very long class name", 413),
        ("cat, cat", 422),
        (None, 422),
    ):
        assert status(lambda bad=bad: inputs.read_vocabulary(bad, LIMITS)) == code, bad


def test_vocabulary_paths_are_never_opened(tmp_path):
    with pytest.raises(RequestError) as e:
        inputs.read_vocabulary(str(tmp_path / "names.txt"), Limits(name_chars=2))
    assert e.value.status == 413  # judged as a name (too long), not looked up as a file


def test_boxes_in_three_forms_and_every_bad_row_named():
    size = (100, 200)
    want = torch.tensor([[10.0, 20.0, 50.0, 60.0]])
    assert torch.equal(inputs.read_boxes("[[10, 20, 50, 60]]", size, LIMITS), want)
    assert torch.equal(inputs.read_boxes('{"xyxy": [[10, 20, 50, 60]]}', size, LIMITS), want)
    coco = '[{"bbox": [10, 20, 40, 40], "score": 0.5}]'
    assert torch.equal(inputs.read_boxes(coco, size, LIMITS), want)
    clipped = inputs.read_boxes("[[-5, -5, 50, 60]]", size, LIMITS)
    assert clipped.tolist() == [[0.0, 0.0, 50.0, 60.0]]
    for bad in (
        None,
        "",
        "[[1, 2, 3",
        "[]",
        "[[1, 2, 3]]",
        '[["a", 2, 3, 4]]',
        "[[NaN, 2, 3, 4]]",
        "[[1, 2, Infinity, 4]]",
        "[[true, 2, 3, 4]]",
        "[[50, 50, 10, 10]]",
        "[[300, 300, 400, 400]]",
        "[[1, 1, 1.5, 1.5]]",
        '{"boxes": []}',
        '"a string"',
        "[[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3], [0, 0, 4, 4]]",
        "[" * 100_000 + "]" * 100_000,
    ):
        assert status(lambda bad=bad: inputs.read_boxes(bad, size, LIMITS)) in (413, 422), bad


def test_points_as_text_or_json_inside_the_image():
    size = (100, 200)
    assert inputs.read_points("10,20; 30.5,40", size, LIMITS).tolist() == [[10, 20], [30.5, 40]]
    assert inputs.read_points("[[10, 20]]", size, LIMITS).tolist() == [[10, 20]]
    for bad in ("10", "10,20,30", "x,y", "[[10]]", "[[250, 10]]", "[[10, -1]]", "1,2;3,4;5,6;7,8"):
        assert status(lambda bad=bad: inputs.read_points(bad, size, LIMITS)) in (413, 422), bad
