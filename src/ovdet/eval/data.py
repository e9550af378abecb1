"""Ground truth and detections for evaluation: loading, one-line validation, base/novel splits.

Detections are checked against the ground truth before any metric is computed: each entry must
name a known image and category, have a finite score and a box of non-negative size (and a mask
for segm); the first bad entry is reported by its index.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ovdet.errors import FormatError
from ovdet.io.coco import read_json

FREQUENCIES = ("r", "c", "f")  # LVIS: rare (1-10 training images), common (11-100), frequent


def load_gt(gt: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """Read and check a COCO/LVIS ground-truth dataset (a path or an already-loaded dict)."""
    data = read_json(gt) if not isinstance(gt, dict) else gt
    source = str(gt) if not isinstance(gt, dict) else "ground truth"
    if not isinstance(data, dict):
        raise FormatError(
            f"{source}: ground truth must be a COCO dataset object, got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise FormatError(f"{source}: ground truth lacks the list {key!r}")
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise FormatError(f"{source}: image {i} has no 'id'")
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise FormatError(f"{source}: category {i} needs 'id' and 'name', got {c!r}")
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not {"image_id", "category_id", "bbox"} <= set(a):
            raise FormatError(f"{source}: annotation {i} needs image_id, category_id and bbox")
    return data


def load_detections(
    dt: str | os.PathLike | list[dict[str, Any]], gt: dict[str, Any], iou_type: str = "bbox"
) -> list[dict[str, Any]]:
    """Read detections (path or list) and check every entry against `gt`.

    Returns a new list of new dicts (the caller's entries are not modified).
    """
    data = read_json(dt) if not isinstance(dt, list) else dt
    source = str(dt) if not isinstance(dt, list) else "detections"
    if not isinstance(data, list):
        raise FormatError(f"{source}: detections must be a JSON list, got {type(data).__name__}")
    images = {im["id"] for im in gt["images"]}
    categories = {c["id"] for c in gt["categories"]}
    out = []
    for i, e in enumerate(data):
        _check_detection(i, e, images, categories, iou_type, source)
        out.append(dict(e))
    return out


def _check_detection(
    i: int, e: Any, images: set, categories: set, iou_type: str, source: str
) -> None:
    where = f"{source}: detection {i}"
    if not isinstance(e, dict):
        raise FormatError(f"{where} must be an object, got {type(e).__name__}")
    if e.get("image_id") not in images:
        raise FormatError(
            f"{where} names image_id {e.get('image_id')!r}, which the ground truth lacks"
        )
    if e.get("category_id") not in categories:
        raise FormatError(
            f"{where} names category_id {e.get('category_id')!r}, unknown to the ground truth"
        )
    score = e.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        raise FormatError(f"{where} has score {score!r}; expected a finite number")
    box = e.get("bbox")
    if iou_type == "bbox" or box is not None:
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)
        ):
            raise FormatError(f"{where} has bbox {box!r}; expected [x, y, width, height]")
        if not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
            raise FormatError(f"{where} has a non-finite or negative-size bbox {box}")
    if iou_type == "segm" and not isinstance(e.get("segmentation"), (dict, list)):
        raise FormatError(f"{where} has no segmentation, needed for --iou-type segm")


def cap_per_image(detections: list[dict[str, Any]], max_per_image: int) -> list[dict[str, Any]]:
    """Keep the `max_per_image` highest-scoring detections of each image, across all categories
    (LVIS's rule: 300 per image; lvis-api's LVISResults does the same)."""
    if not detections:
        return detections
    image_ids = np.array([hash(d["image_id"]) for d in detections])
    scores = np.array([d["score"] for d in detections], dtype=np.float64)
    order = np.lexsort((-scores, image_ids))  # by image, then score descending
    sorted_images = image_ids[order]
    starts = np.r_[0, np.flatnonzero(sorted_images[1:] != sorted_images[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.sort(order[rank < max_per_image])
    return [detections[i] for i in keep]


@dataclass(frozen=True)
class Split:
    """A base/novel split of category ids."""

    name: str
    base: frozenset[int]
    novel: frozenset[int]


def coco_ovd_split() -> Split:
    """The COCO open-vocabulary split: 48 base and 17 novel categories (shipped as data)."""
    text = resources.files("ovdet.resources").joinpath("coco_ovd_split.json").read_text()
    data = json.loads(text)
    return Split(
        "coco-ovd",
        frozenset(c["id"] for c in data["base"]),
        frozenset(c["id"] for c in data["novel"]),
    )


def make_split(spec: str | Sequence[str | int] | None, gt: dict[str, Any]) -> Split | None:
    """A split from a spec: "coco-ovd", "lvis" (novel = rare), a .json/.txt file or a comma list
    of novel category names or ids (base = the other categories of `gt`)."""
    if spec is None:
        return None
    by_name = {str(c["name"]).lower(): c["id"] for c in gt["categories"]}
    all_ids = frozenset(c["id"] for c in gt["categories"])
    if spec == "coco-ovd":
        split = coco_ovd_split()
        return Split(split.name, split.base & all_ids, split.novel & all_ids)
    if spec == "lvis":
        missing = [c["name"] for c in gt["categories"] if c.get("frequency") not in FREQUENCIES]
        if missing:
            raise FormatError(
                f"split 'lvis' needs a 'frequency' for every category; {missing[0]!r} has none"
            )
        novel = frozenset(c["id"] for c in gt["categories"] if c["frequency"] == "r")
        return Split("lvis", all_ids - novel, novel)
    items: Sequence[str | int]
    if isinstance(spec, str) and Path(spec).is_file():
        text = Path(spec).read_text()
        items = (
            json.loads(text) if spec.endswith(".json") else [ln.strip() for ln in text.splitlines()]
        )
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",")]
    else:
        items = list(spec)
    novel = set()
    for item in (x for x in items if str(x).strip()):
        if isinstance(item, int) or str(item).isdigit():
            if int(item) not in all_ids:
                raise FormatError(f"novel category id {item} is not in the ground truth")
            novel.add(int(item))
        elif str(item).lower() in by_name:
            novel.add(by_name[str(item).lower()])
        else:
            raise FormatError(
                f"novel category {item!r} is not in the ground truth; "
                f"known: {sorted(by_name)[:8]}..."
            )
    if not novel:
        raise FormatError(f"the split {spec!r} names no novel category")
    return Split("custom", all_ids - frozenset(novel), frozenset(novel))
