"""Request fields -> validated tensors and vocabularies, or a `RequestError` (4xx, one line).

Nothing here touches a model or the file system: an image arrives as bytes, a vocabulary as
text (never a path), boxes and points as JSON or "x,y; x,y" text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ovdet.errors import OvdetError
from ovdet.serve.limits import Limits, RequestError
from ovdet.types import Vocabulary


@contextmanager
def refused(status: int = 422) -> Iterator[None]:
    """Turn an `OvdetError` raised inside into a `RequestError` with `status` (its one line)."""
    try:
        yield
    except OvdetError as e:
        raise RequestError(status, str(e)) from None


def read_image(data: bytes, name: str, limits: Limits) -> torch.Tensor:
    """Uploaded bytes -> (3, H, W) uint8; 413 over the byte or pixel cap, 400 if unreadable."""
    from ovdet.io.images import decode_image

    if len(data) > limits.upload_bytes:
        raise RequestError(413, f"image is {len(data)} bytes, over the {limits.upload_bytes} cap")
    try:
        return decode_image(data, repr(name), limits.pixels)
    except OvdetError as e:
        status = 413 if "over the limit" in str(e) else 400
        raise RequestError(status, str(e).replace("; pass max_pixels to allow it", "")) from None


def read_vocabulary(text: str | None, limits: Limits) -> Vocabulary:
    """Inline vocabulary text ("cat, traffic cone|cone" or "coco") -> Vocabulary (capped)."""
    from ovdet.vocab.parse import parse_inline_vocabulary

    if text is None or not text.strip():
        raise RequestError(422, 'the vocabulary is empty: send vocab="cat, traffic cone"')
    if len(text) > limits.vocabulary * (limits.name_chars + 2):
        raise RequestError(413, f"the vocabulary text is {len(text)} characters, too long")
    with refused():
        vocab = parse_inline_vocabulary(text)
    if len(vocab) > limits.vocabulary:
        raise RequestError(413, f"{len(vocab)} class names, over the cap of {limits.vocabulary}")
    for name in (n for i in range(len(vocab)) for n in vocab.all_names(i)):
        if len(name) > limits.name_chars:
            raise RequestError(
                413,
                f"class name {name[:40]!r}... is {len(name)} characters, over {limits.name_chars}",
            )
    return vocab


def read_boxes(text: str | None, image_size: tuple[int, int], limits: Limits) -> torch.Tensor:
    """Boxes as JSON -> (N, 4) xyxy clipped to the (H, W) image.

    Accepted: [[x1, y1, x2, y2], ...], {"xyxy": [...]}, or COCO records [{"bbox": [x, y, w, h]},
    ...] (a /v1/detect response's "detections" fed back)."""
    from ovdet.io.prompts import check_rows
    from ovdet.ops.boxes import validate_input_boxes, xywh_to_xyxy

    value = _json(text, "boxes")
    if isinstance(value, dict) and "detections" in value:
        value = value["detections"]
    if isinstance(value, dict):
        if "xyxy" not in value:
            raise RequestError(
                422, f'boxes: an object needs an "xyxy" list, got keys {sorted(value)[:5]}'
            )
        value = value["xyxy"]
    if not isinstance(value, list):
        raise RequestError(422, f"boxes must be a JSON list, got {type(value).__name__}")
    coco = bool(value) and all(isinstance(v, dict) for v in value)
    rows = [v.get("bbox") for v in value] if coco else value
    if len(rows) > limits.prompts:
        raise RequestError(413, f"{len(rows)} boxes, over the cap of {limits.prompts}")
    with refused():
        xyxy = check_rows(rows, 4, "box", "x1,y1,x2,y2")
    if coco:
        xyxy = xywh_to_xyxy(xyxy)
    with refused():
        return validate_input_boxes(xyxy, image_size)


def read_points(text: str | None, image_size: tuple[int, int], limits: Limits) -> torch.Tensor:
    """Points as JSON [[x, y], ...] or text "x,y; x,y" -> (N, 2), each inside the (H, W) image."""
    from ovdet.io.prompts import check_points, parse_points

    if text is None or not text.strip():
        raise RequestError(422, "points are missing")
    with refused():
        xy = parse_points(text)
    if len(xy) > limits.prompts:
        raise RequestError(413, f"{len(xy)} points, over the cap of {limits.prompts}")
    with refused():
        return check_points(xy, image_size)


def read_queries(text: str | None, limits: Limits) -> list[str]:
    """Free-text queries "red umbrella, blue umbrella" -> their list (capped like a vocabulary)."""
    return list(read_vocabulary(text, limits).names)


def _json(text: str | None, what: str) -> Any:
    if text is None or not text.strip():
        raise RequestError(422, f"{what} are missing")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise RequestError(422, f"{what} are not valid JSON: {e}") from None
