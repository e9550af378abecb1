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
from ovdet.io.coco import is_file, read_json

FREQUENCIES = ("r", "c", "f")  # LVIS: rare (1-10 training images), common (11-100), frequent


def load_gt(gt: str | os.PathLike | dict[str, Any], iou_type: str = "bbox") -> dict[str, Any]:
    """Read and check a COCO/LVIS ground-truth dataset (a path or an already-loaded dict).

    Every image, category and annotation needs a unique id; boxes are four finite numbers with
    non-negative width and height; annotations name a known image and category; with
    `iou_type="segm"` every annotation has a segmentation. The first bad record is named.
    """
    data = read_json(gt) if not isinstance(gt, dict) else gt
    source = str(gt) if not isinstance(gt, dict) else "ground truth"
    if not isinstance(data, dict):
        raise FormatError(
            f"{source}: ground truth must be a COCO dataset object, got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise FormatError(f"{source}: ground truth lacks the list {key!r}")
    images = _unique_ids(data["images"], "image", source)
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "name" not in c:
            raise FormatError(f"{source}: category {i} needs 'id' and 'name', got {c!r}")
    categories = _unique_ids(data["categories"], "category", source)
    _unique_ids(data["annotations"], "annotation", source)
    for i, a in enumerate(data["annotations"]):
        where = f"{source}: annotation {i} (id {a.get('id')!r})"
        if not {"image_id", "category_id", "bbox"} <= set(a):
            raise FormatError(f"{where} needs image_id, category_id and bbox")
        if not _hashable_id(a["image_id"]) or a["image_id"] not in images:
            raise FormatError(f"{where} names image_id {a['image_id']!r}, not among the images")
        if not _hashable_id(a["category_id"]) or a["category_id"] not in categories:
            raise FormatError(f"{where} names category_id {a['category_id']!r}, not a category")
        _check_box(a["bbox"], where)
        if iou_type == "segm":
            _check_segmentation(a.get("segmentation"), where, images[a["image_id"]])
    return data


def _hashable_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unique_ids(records: list[Any], what: str, source: str) -> dict[int, Any]:
    """id -> record; every record is an object with an integer id, no id twice."""
    seen: dict[int, Any] = {}
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not _hashable_id(r.get("id")):
            got = r.get("id") if isinstance(r, dict) else r
            raise FormatError(f"{source}: {what} {i} needs an integer 'id', got {got!r}")
        if r["id"] in seen:
            raise FormatError(
                f"{source}: {what} id {r['id']} appears twice (records {i} and "
                f"{records.index(seen[r['id']])})"
            )
        seen[r["id"]] = r
    return seen


def _check_box(box: Any, where: str) -> None:
    if not (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    ):
        raise FormatError(f"{where} has bbox {box!r}; expected [x, y, width, height] numbers")
    if not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
        raise FormatError(f"{where} has a non-finite or negative-size bbox {box}")


def _check_segmentation(seg: Any, where: str, image: dict[str, Any] | None) -> None:
    """A polygon list (each polygon an even list of >= 6 numbers) or an RLE of the image's size."""
    if isinstance(seg, list):
        ok = seg and all(
            isinstance(poly, list)
            and len(poly) >= 6
            and len(poly) % 2 == 0
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in poly)
            for poly in seg
        )
        if not ok:
            raise FormatError(f"{where} has a malformed polygon segmentation")
        return
    if not isinstance(seg, dict):
        raise FormatError(f"{where} has no segmentation (needed for --iou-type segm)")
    size, counts = seg.get("size"), seg.get("counts")
    if not (
        isinstance(size, list) and len(size) == 2 and all(_hashable_id(v) and v > 0 for v in size)
    ):
        raise FormatError(f"{where} has an RLE 'size' {size!r}; expected [height, width]")
    if image is not None and "height" in image and list(size) != [image["height"], image["width"]]:
        raise FormatError(
            f"{where} has an RLE of size {size}, its image is {[image['height'], image['width']]}"
        )
    if isinstance(counts, list):
        if not all(_hashable_id(v) and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
            raise FormatError(f"{where} has RLE counts that do not cover its {size} pixels")
    elif not isinstance(counts, str) or not counts:
        raise FormatError(f"{where} has RLE counts {str(counts)[:40]!r}; expected a string or list")
    elif not _rle_string_ok(seg):
        raise FormatError(
            f"{where} has a malformed compressed RLE (counts {counts[:24]!r}...): it does not "
            f"decode to runs covering its {size} pixels"
        )


def _rle_string_ok(rle: dict[str, Any]) -> bool:
    """Whether a compressed RLE string decodes (by the evaluator's own decoder, in C: one call
    per entry, cheap at LVIS's millions; without it, ovdet's decoder, which also checks that the
    runs cover the H x W pixels)."""
    h, w = rle["size"]
    try:
        from faster_coco_eval.core import mask as coco_mask
    except ImportError:
        coco_mask = None
    try:
        if coco_mask is not None:
            coco_mask.area([{"size": [h, w], "counts": rle["counts"].encode()}])
            return True
        from ovdet.ops.masks import rle_from_string

        runs = rle_from_string(rle["counts"])
        return all(r >= 0 for r in runs) and sum(runs) == h * w
    except (RuntimeError, ValueError, FormatError):
        return False


def load_detections(
    dt: str | os.PathLike | list[dict[str, Any]], gt: dict[str, Any], iou_type: str = "bbox"
) -> list[dict[str, Any]]:
    """Read detections (path or list) and check every entry against `gt`.

    An image_id that is a string (what `ovdet detect` writes without --gt: the image's path) is
    mapped to the ground truth's integer id by file name (`io.coco.match_name`), and that entry's
    category by its `category_name` (its category_id is then the detector's vocabulary index + 1,
    not the ground truth's id); an entry with a name and no category_id is mapped by name too.
    For segm, boxes are dropped when only some entries carry one (the box is recomputed from
    the mask).
    Returns a new list of new dicts (the caller's entries are not modified).
    """
    data = read_json(dt) if not isinstance(dt, list) else dt
    source = str(dt) if not isinstance(dt, list) else "detections"
    if not isinstance(data, list):
        raise FormatError(f"{source}: detections must be a JSON list, got {type(data).__name__}")
    images = {im["id"]: im for im in gt["images"]}
    categories = {c["id"] for c in gt["categories"]}
    by_name = _name_resolver(gt, source)
    category_of = _category_resolver(gt, source)
    out = []
    for i, e in enumerate(data):
        if isinstance(e, dict):
            e = {**e, **_integral_ids(e)}
            named = "category_name" in e and (
                isinstance(e.get("image_id"), str) or e.get("category_id") is None
            )
            if isinstance(e.get("image_id"), str):
                e["image_id"] = by_name(e["image_id"], i)  # e is already a new dict
            if named:  # a path-keyed entry's id is its vocabulary's, not the ground truth's
                e["category_id"] = category_of(e["category_name"], i)
        _check_detection(i, e, images, categories, iou_type, source)
        out.append(dict(e))
    if iou_type == "segm" and 0 < sum("bbox" in e for e in out) < len(out):
        for e in out:
            e.pop("bbox", None)
    return out


def _integral_ids(e: dict[str, Any]) -> dict[str, int]:
    """image_id / category_id written as whole floats (1.0: what pandas and some JSON writers
    give) as ints; any other value is left for the checks to report."""
    return {
        k: int(v)
        for k in ("image_id", "category_id")
        if isinstance(v := e.get(k), float) and v.is_integer()
    }


def _name_resolver(gt: dict[str, Any], source: str):
    """(name, index) -> the ground truth's image id for an image named `name` (memoised)."""
    from ovdet.io.coco import match_name

    names = [str(im.get("file_name", "")) for im in gt["images"]]
    memo: dict[str, int] = {}

    def resolve(name: str, i: int) -> int:
        if name not in memo:
            hit = match_name(name, names)
            if hit is None:
                raise FormatError(
                    f"{source}: detection {i} names image {name!r}; no ground-truth image has "
                    "that file name"
                )
            memo[name] = gt["images"][hit]["id"]
        return memo[name]

    return resolve


def _category_resolver(gt: dict[str, Any], source: str):
    """(category_name, index) -> the ground truth's id of the category of that name or, failing
    that, synonym (case-insensitive, LVIS underscores read as spaces)."""
    ids: dict[str, int] = {}
    for c in sorted(gt["categories"], key=lambda c: c["id"]):
        for syn in c.get("synonyms") or []:
            if isinstance(syn, str):
                ids.setdefault(syn.replace("_", " ").lower(), c["id"])
    for c in gt["categories"]:  # names before synonyms
        ids[str(c["name"]).replace("_", " ").lower()] = c["id"]

    def resolve(name: Any, i: int) -> int:
        key = " ".join(name.replace("_", " ").split()).lower() if isinstance(name, str) else None
        if key not in ids:
            raise FormatError(
                f"{source}: detection {i} names category {name!r}, which the ground truth lacks "
                f"(its names: {sorted(ids)[:8]}...)"
            )
        return ids[key]

    return resolve


def _check_detection(
    i: int, e: Any, images: dict, categories: set, iou_type: str, source: str
) -> None:
    where = f"{source}: detection {i}"
    if not isinstance(e, dict):
        raise FormatError(f"{where} must be an object, got {type(e).__name__}")
    if not _hashable_id(e.get("image_id")) or e["image_id"] not in images:
        raise FormatError(
            f"{where} names image_id {e.get('image_id')!r}, which the ground truth lacks"
        )
    if not _hashable_id(e.get("category_id")) or e["category_id"] not in categories:
        raise FormatError(
            f"{where} names category_id {e.get('category_id')!r}, unknown to the ground truth"
        )
    score = e.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        raise FormatError(f"{where} has score {score!r}; expected a finite number")
    box = e.get("bbox")
    if iou_type == "bbox" or box is not None:
        _check_box(box, where)
    if iou_type == "segm":
        _check_segmentation(e.get("segmentation"), where, images[e["image_id"]])


def cap_per_image(detections: list[dict[str, Any]], max_per_image: int) -> list[dict[str, Any]]:
    """Keep the `max_per_image` highest-scoring detections of each image, across all categories
    (LVIS's rule: 300 per image; lvis-api's LVISResults does the same)."""
    if not detections:
        return detections
    index: dict[Any, int] = {}  # image id -> a dense group number (ids, not hashes, decide)
    image_ids = np.array([index.setdefault(d["image_id"], len(index)) for d in detections])
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


def _coco_ovd_records() -> dict[str, list[dict[str, Any]]]:
    """{"base": [{id, name}, ...], "novel": [...]}: the shipped COCO-OVD split file."""
    text = resources.files("ovdet.resources").joinpath("coco_ovd_split.json").read_text()
    return json.loads(text)


def coco_ovd_split() -> Split:
    """The COCO open-vocabulary split: 48 base and 17 novel categories (shipped as data)."""
    data = _coco_ovd_records()
    return Split(
        "coco-ovd",
        frozenset(c["id"] for c in data["base"]),
        frozenset(c["id"] for c in data["novel"]),
    )


def _coco_ovd_on(gt: dict[str, Any]) -> Split:
    """The COCO-OVD split restricted to `gt`'s categories, refused when `gt`'s ids are not
    COCO's (the split is by COCO category id: on another dataset it would pick arbitrary
    classes as novel)."""
    data = _coco_ovd_records()
    coco = {c["id"]: c["name"] for part in ("base", "novel") for c in data[part]}
    shared = [c for c in gt["categories"] if c["id"] in coco]
    wrong = next((c for c in shared if str(c["name"]).lower() != coco[c["id"]].lower()), None)
    if not shared or wrong is not None:
        c = wrong or gt["categories"][0]
        raise FormatError(
            f"split 'coco-ovd' is by COCO category id, and this ground truth's ids are not COCO's "
            f"(its category {c['id']} is {c['name']!r}, COCO's is "
            f"{coco.get(c['id'], 'no category')!r}); give the novel names instead"
        )
    ids = {c["id"] for c in gt["categories"]}
    base, novel = ({c["id"] for c in data[part]} & ids for part in ("base", "novel"))
    return Split("coco-ovd", frozenset(base), frozenset(novel))


def _split_file(path: str) -> list[Any]:
    """A split file's entries: a .json file's list, or a text file's lines (UTF-8, BOM or not)."""
    if path.lower().endswith(".json"):
        items = read_json(path)
        if not isinstance(items, list):
            raise FormatError(
                f"{path}: a split file holds a JSON list of novel category names or ids, "
                f"got {type(items).__name__}"
            )
        return items
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path} is not UTF-8 text: {e}") from None
    return [ln.strip() for ln in text.splitlines()]


def make_split(spec: str | Sequence[str | int] | None, gt: dict[str, Any]) -> Split | None:
    """A split from a spec: "coco-ovd", "lvis" (novel = rare), a .json/.txt file or a comma list
    of novel category names or ids (base = the other categories of `gt`)."""
    if spec is None:
        return None
    by_name = {str(c["name"]).lower(): c["id"] for c in gt["categories"]}
    all_ids = frozenset(c["id"] for c in gt["categories"])
    if spec == "coco-ovd":
        return _coco_ovd_on(gt)
    if spec == "lvis":
        missing = [c["name"] for c in gt["categories"] if c.get("frequency") not in FREQUENCIES]
        if missing:
            raise FormatError(
                f"split 'lvis' needs a 'frequency' for every category; {missing[0]!r} has none"
            )
        novel = frozenset(c["id"] for c in gt["categories"] if c["frequency"] == "r")
        return Split("lvis", all_ids - novel, novel)
    items: Sequence[str | int]
    if isinstance(spec, str) and is_file(spec):
        items = _split_file(spec)
    elif isinstance(spec, str) and "," not in spec and spec.lower().endswith((".json", ".txt")):
        raise FormatError(f"split file not found: {spec}")
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",")]
    else:
        items = list(spec)
    novel = set()
    for item in (x for x in items if str(x).strip()):
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise FormatError(
                f"the split {spec!r}: a novel category is a name or an id, got {item!r}"
            )
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
