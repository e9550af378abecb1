"""Regions -> the JSON a response carries: COCO-style records, the same as the CLI writes."""

from __future__ import annotations

from typing import Any

from ovdet.types import Regions, Vocabulary


def records(
    regions: Regions, vocab: Vocabulary, image_id: int | str, base_names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One record per region: image_id, category_id (label + 1), category_name, bbox [x, y, w, h],
    score, segmentation (COCO RLE, when the regions have masks) and novel (the name is not one
    of the model's training classes)."""
    from ovdet.io.coco import regions_to_coco

    base = {n.lower() for n in base_names}
    entries = regions_to_coco(regions, image_id=image_id)
    for e in entries:
        name = vocab.names[e["category_id"] - 1]
        e["category_name"] = name
        e["novel"] = bool(base_names) and name.lower() not in base
    return entries


def image_id_of(value: str | None, filename: str | None) -> int | str:
    """The image id a client asked for (an integer when it reads as one), else the upload's
    file name (which `ovdet eval` matches to a ground truth's file_name), else "upload"."""
    if value is not None and value.strip():
        text = value.strip()
        return int(text) if text.lstrip("-").isdigit() else text
    if filename:
        return filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "upload"
