"""COCO JSON at the edges: `Regions` <-> results lists (XYWH boxes, category ids, RLE masks).

A COCO results file is a JSON list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}
with an optional "segmentation" RLE. Each malformed entry is reported by its index.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ovdet.errors import FormatError
from ovdet.ops.boxes import xywh_to_xyxy, xyxy_to_xywh
from ovdet.ops.masks import rle_decode, rle_encode
from ovdet.types import Regions


def regions_to_coco(
    regions: Regions,
    image_id: int | str,
    category_ids: Sequence[int] | None = None,
    rounded: bool = True,
) -> list[dict[str, Any]]:
    """Regions of one image -> COCO result entries.

    Args:
        regions: labelled regions; `scores` default to 1 when absent.
        image_id: the COCO image id.
        category_ids: maps label index -> COCO category id; default: label + 1.
        rounded: boxes to 0.01 px and scores to 1e-5 (files people read); False keeps full
            precision (results scored in memory, where rounding would create ties).
    """
    if regions.labels is None:
        raise ValueError("regions_to_coco needs labelled regions (labels is None)")
    xywh = xyxy_to_xywh(regions.xyxy).tolist()
    scores = regions.scores.tolist() if regions.scores is not None else [1.0] * len(regions)
    entries = []
    for i, label in enumerate(regions.labels.tolist()):
        if category_ids is not None and not 0 <= label < len(category_ids):
            raise ValueError(
                f"label {label} of region {i} has no category id ({len(category_ids)})"
            )
        entry = {
            "image_id": image_id,
            "category_id": int(category_ids[label]) if category_ids is not None else label + 1,
            "bbox": [round(v, 2) for v in xywh[i]] if rounded else xywh[i],
            "score": round(float(scores[i]), 5) if rounded else float(scores[i]),
        }
        if regions.masks is not None:
            entry["segmentation"] = rle_encode(regions.masks[i])
        entries.append(entry)
    return entries


def coco_to_regions(
    entries: list[dict[str, Any]],
    image_size: tuple[int, int],
    category_ids: Sequence[int] | None = None,
) -> Regions:
    """COCO result entries of one image -> Regions (labels index `category_ids`; masks if RLE).

    Args:
        entries: validated by `check_results`; all for the same image.
        image_size: (H, W) of that image.
        category_ids: label index -> category id; default: label = category_id - 1.
    """
    check_results(entries)
    lookup = {int(c): i for i, c in enumerate(category_ids)} if category_ids is not None else None
    labels = []
    for i, e in enumerate(entries):
        cid = e.get("category_id")
        if not isinstance(cid, int) or (lookup is not None and cid not in lookup):
            raise FormatError(f"entry {i} has unknown category_id {cid!r}")
        labels.append(lookup[cid] if lookup is not None else cid - 1)
    xyxy = xywh_to_xyxy(
        torch.tensor([e["bbox"] for e in entries], dtype=torch.float32).reshape(-1, 4)
    )
    scores = torch.tensor([float(e.get("score", 1.0)) for e in entries], dtype=torch.float32)
    masks = None
    if entries and all("segmentation" in e for e in entries):
        masks = torch.stack([rle_decode(e["segmentation"]) for e in entries])
        if tuple(masks.shape[1:]) != tuple(image_size):
            raise FormatError(
                f"masks are {tuple(masks.shape[1:])}, the image is {tuple(image_size)}"
            )
    return Regions(
        xyxy, image_size, scores=scores, labels=torch.tensor(labels, dtype=torch.int64), masks=masks
    )


def is_file(text: str | os.PathLike) -> bool:
    """True if `text` names an existing file; False for anything that cannot be a path (a 300-
    character inline list makes `Path.is_file` raise ENAMETOOLONG, a NUL byte ValueError)."""
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON with one-line errors for a missing or malformed file."""
    if not is_file(path):
        raise FormatError(f"JSON file not found: {path}")
    path = Path(path).expanduser()
    try:
        with open(path, encoding="utf-8-sig") as f:  # UTF-8 with or without a BOM, any locale
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path} is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"{path} is not a text file: {e}") from None


def check_results(entries: Any, source: str = "results") -> list[dict[str, Any]]:
    """Validate a COCO results list; raise `FormatError` naming the first bad entry."""
    if not isinstance(entries, list):
        raise FormatError(
            f"{source}: a COCO results file must be a JSON list, got {type(entries).__name__}"
        )
    for i, e in enumerate(entries):
        where = f"{source}: entry {i}"
        if not isinstance(e, dict):
            raise FormatError(f"{where} must be an object, got {type(e).__name__}")
        for key in ("image_id", "bbox"):
            if key not in e:
                raise FormatError(f"{where} lacks {key!r}: {json.dumps(e)[:120]}")
        if not _hashable(e["image_id"]):
            raise FormatError(
                f"{where} has image_id {e['image_id']!r}; expected an int or a string"
            )
        if "category_id" in e and not _hashable(e["category_id"]):
            raise FormatError(f"{where} has category_id {e['category_id']!r}; expected an int")
        box = e["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise FormatError(f"{where} has bbox {box!r}; expected [x, y, width, height] numbers")
        if not all(math.isfinite(v) for v in box):
            raise FormatError(f"{where} has a non-finite bbox {box}")
        if box[2] < 0 or box[3] < 0:
            raise FormatError(f"{where} has negative width or height in bbox {box}")
        if "score" in e and not (_is_number(e["score"]) and math.isfinite(e["score"])):
            raise FormatError(f"{where} has score {e['score']!r}; expected a finite number")
    return entries


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def match_name(query: str, names: Sequence[str], what: str = "image") -> int | None:
    """Index of the one name in `names` that `query` (a path or file name) denotes, else None.

    Tried in order, the first rule with any match decides: the same path; one path ends with the
    other by whole folders ("val/images/1.png" ~ "images/1.png"); the same file name; the same
    stem ("1.png" ~ "1.jpg"). Never a substring: "1.png" does not match "11.png".

    Raises:
        FormatError: when the deciding rule matches more than one name.
    """
    q = PurePosixPath(str(query).replace(os.sep, "/"))
    paths = [PurePosixPath(str(n).replace(os.sep, "/")) for n in names]

    def tail(a: PurePosixPath, b: PurePosixPath) -> bool:
        n = min(len(a.parts), len(b.parts))
        return n > 0 and a.parts[-n:] == b.parts[-n:] and len(b.parts) >= 1

    rules = (
        lambda p: p == q,
        lambda p: len(p.parts) > 1 and len(q.parts) > 1 and tail(p, q),
        lambda p: p.name == q.name,
        lambda p: p.stem == q.stem,
    )
    for rule in rules:
        hits = [i for i, p in enumerate(paths) if rule(p)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            shown = ", ".join(repr(str(names[i])) for i in hits[:4])
            raise FormatError(f"{query!r} matches {len(hits)} {what}s ({shown}); name it exactly")
    return None


def read_boxes(path: str | os.PathLike, image_name: str | None = None) -> torch.Tensor:
    """Read the boxes of one image from JSON -> (N, 4) xyxy pixels.

    Accepted forms:
      - a COCO results list: the entries whose image_id names `image_name` (see `match_name`);
        a list of one image with an integer id is taken as that image's;
      - a COCO dataset {"images", "annotations"}: the annotations of the image whose file_name
        `image_name` names (or of the only image);
      - {"xyxy": [[x1, y1, x2, y2], ...]}, or that list alone.
    A file that holds boxes of other images only is refused, never read as "no boxes".
    """
    data = read_json(path)
    bare = isinstance(data, list) and bool(data) and all(isinstance(b, list) for b in data)
    if bare or isinstance(data, dict) and "xyxy" in data:
        boxes = data if bare else data["xyxy"]
        if not isinstance(boxes, list) or not all(
            isinstance(b, list) and len(b) == 4 and all(_is_number(v) for v in b) for b in boxes
        ):
            raise FormatError(f"{path}: boxes must be a list of [x1, y1, x2, y2] numbers")
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        images, annotations = dataset_parts(data, str(path))
        image_id = _pick_image(images, image_name, str(path))
        entries = [a for a in annotations if a.get("image_id") == image_id]
    elif isinstance(data, list):
        entries = _entries_of_image(check_results(data, str(path)), image_name, str(path))
    else:
        raise FormatError(
            f"{path}: expected a COCO results list, a COCO dataset, {{'xyxy': [...]}} or "
            f"[[x1, y1, x2, y2], ...], "
            f"got {type(data).__name__} {list(data)[:5] if isinstance(data, dict) else ''}"
        )
    check_results(entries, str(path))
    xywh = torch.tensor([e["bbox"] for e in entries], dtype=torch.float32).reshape(-1, 4)
    return xywh_to_xyxy(xywh)


def dataset_parts(data: dict[str, Any], source: str) -> tuple[list[dict], list[dict]]:
    """A COCO dataset's images (objects with an int or string id) and annotations (objects),
    or a one-line `FormatError` naming the first entry that is not."""
    parts = []
    for key in ("images", "annotations"):
        items = data[key]
        if not isinstance(items, list):
            raise FormatError(f"{source}: {key!r} must be a list, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise FormatError(
                    f"{source}: {key}[{i}] must be an object, got {type(item).__name__} "
                    f"{json.dumps(item)[:40]}"
                )
            if key == "images" and not _hashable(item.get("id")):
                raise FormatError(
                    f"{source}: images[{i}] has id {item.get('id')!r}; every image needs an int "
                    "or string id"
                )
        parts.append(items)
    return parts[0], parts[1]


def _entries_of_image(
    entries: list[dict[str, Any]], image_name: str | None, source: str
) -> list[dict[str, Any]]:
    """The entries of a results list that belong to `image_name`."""
    ids = list(dict.fromkeys(e["image_id"] for e in entries))
    if not entries:
        return entries
    if image_name is None:
        if len(ids) > 1:
            raise FormatError(
                f"{source} holds boxes of {len(ids)} images {ids[:5]}; say which image"
            )
        return entries
    named = [i for i in ids if isinstance(i, str)]
    hit = match_name(image_name, named) if named else None
    if hit is not None:
        return [e for e in entries if e["image_id"] == named[hit]]
    if len(ids) == 1 and not isinstance(ids[0], str):  # one image with a numeric id: its boxes
        return entries
    raise FormatError(
        f"{source} holds boxes of {len(ids)} image(s) {[str(i) for i in ids[:5]]}, "
        f"none named like {Path(image_name).name!r}"
    )


def _hashable(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _pick_image(images: list[dict[str, Any]], image_name: str | None, source: str) -> Any:
    if image_name is not None:
        hit = match_name(image_name, [str(im.get("file_name", "")) for im in images])
        if hit is None:
            raise FormatError(f"{source}: no image is named like {Path(image_name).name!r}")
        return images[hit]["id"]
    if len(images) != 1:
        raise FormatError(f"{source} has {len(images)} images; say which one")
    return images[0]["id"]


class BoxesByImage:
    """A boxes JSON of many images, read and grouped once (a dataset pass asks per image):
    a COCO results list (image ids equal to the pass's, or paths / file names), or a COCO
    dataset (its annotations, its images matched by file name).

    Raises:
        FormatError: the file is not one of these forms.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        data = read_json(path)
        if isinstance(data, dict) and "annotations" in data and "images" in data:
            images, annotations = dataset_parts(data, self.path)
            entries = check_results(annotations, self.path)
            names = {im["id"]: str(im.get("file_name", "")) for im in images}
            self.by_id: dict[Any, list[dict[str, Any]]] = {}
            for e in entries:
                self.by_id.setdefault(names.get(e["image_id"], e["image_id"]), []).append(e)
            self.numeric_ids = False  # keyed by the other dataset's file names
        elif isinstance(data, list):
            self.by_id = {}
            for e in check_results(data, self.path):
                self.by_id.setdefault(e["image_id"], []).append(e)
            self.numeric_ids = True
        else:
            raise FormatError(
                f"{path}: a dataset pass takes a COCO results list or a COCO dataset of boxes"
            )
        self.names = [k for k in self.by_id if isinstance(k, str)]

    def boxes(self, image_id: Any, image_name: str) -> torch.Tensor | None:
        """(N, 4) xyxy boxes of one image (its id first, then its name; `match_name`), or None
        when the file has no entry for it."""
        entries = self.by_id.get(image_id) if self.numeric_ids else None
        if entries is None and self.names:
            hit = match_name(image_name, self.names)
            entries = self.by_id[self.names[hit]] if hit is not None else None
        if entries is None:
            return None
        xywh = torch.tensor([e["bbox"] for e in entries], dtype=torch.float32).reshape(-1, 4)
        return xywh_to_xyxy(xywh)
