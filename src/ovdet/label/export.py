"""The labelled dataset on disk, ready to train on:

    OUT/images/{train,val}/<path relative to the input folder>    (hard links, else copies)
    OUT/annotations/{train,val}.json      COCO instances (--format coco|both)
    OUT/labels/{train,val}/<same path>.txt, OUT/data.yaml   YOLO (--format yolo|both)

An image goes to val when a hash of its relative path falls below `val_share`, so the split does
not move when images are added. COCO boxes are xywh in pixels with the detector's score kept as
"score"; masks (when the model gives them) stay COCO RLE. YOLO lines are "class cx cy w h",
normalised to the image; `data.yaml` lists the names (ultralytics' layout: its folder is the
dataset root).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ovdet.io.atomic import atomic_path, write_json
from ovdet.ops.boxes import xywh_to_xyxy

SPLITS = ("train", "val")


@dataclass
class LabelledImage:
    """One input image: its path relative to the input folder, its file, (H, W), its labels
    (COCO result records, category_id = class index + 1) and its split."""

    key: str
    source: Path
    size: tuple[int, int]
    labels: list[dict[str, Any]] = field(default_factory=list)
    split: str = "train"


def split_of(key: str, val_share: float) -> str:
    """ "val" for a `val_share` of keys (by a hash of the key), else "train"."""
    digest = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big")
    return "val" if digest / 2**64 < val_share else "train"


def place_image(source: Path, target: Path) -> None:
    """`target` becomes `source`'s file: a hard link where the file system allows, else a copy
    (written beside it, then renamed). An existing target of the same size is kept (resume)."""
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.unlink()  # the link takes its name
        try:
            os.link(source, tmp)
        except OSError:  # another device, or no links here
            shutil.copyfile(source, tmp)


def coco_split(images: list[LabelledImage], names: list[str]) -> dict[str, Any]:
    """The COCO instances dataset of `images` (file_name relative to OUT/images)."""
    out_images, annotations = [], []
    for image_id, im in enumerate(images, 1):
        h, w = im.size
        out_images.append(
            {"id": image_id, "file_name": f"{im.split}/{im.key}", "height": h, "width": w}
        )
        for r in im.labels:
            x, y, bw, bh = r["bbox"]
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": r["category_id"],
                "bbox": [x, y, bw, bh],
                "area": float(bw * bh),
                "iscrowd": 0,
                "score": r["score"],
            }
            if "segmentation" in r:
                from ovdet.ops.masks import rle_decode

                ann["segmentation"] = r["segmentation"]
                ann["area"] = float(rle_decode(r["segmentation"]).sum())
            annotations.append(ann)
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    return {"images": out_images, "annotations": annotations, "categories": categories}


def yolo_lines(labels: list[dict[str, Any]], size: tuple[int, int]) -> list[str]:
    """COCO result records -> YOLO "class cx cy w h" lines (normalised by the (H, W) image)."""
    h, w = size
    lines = []
    for r in labels:
        x, y, bw, bh = r["bbox"]
        cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
        lines.append(f"{r['category_id'] - 1} {cx:.6f} {cy:.6f} {bw / w:.6f} {bh / h:.6f}")
    return lines


def read_yolo(path: str | os.PathLike, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A YOLO label file of an (H, W) image -> (N, 4) xyxy pixel boxes and (N,) class indices."""
    h, w = size
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    values = torch.tensor([[float(v) for v in row[1:5]] for row in rows])
    cxcywh = values * torch.tensor([w, h, w, h])
    xywh = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, 2:]], 1)
    return xywh_to_xyxy(xywh), torch.tensor([int(row[0]) for row in rows])


def write_dataset(
    out: Path, images: list[LabelledImage], names: list[str], formats: tuple[str, ...]
) -> dict[str, int]:
    """Place the images and write the label files of `formats` ("coco", "yolo") under `out`;
    returns the number of images per split."""
    counts = {s: sum(im.split == s for im in images) for s in SPLITS}
    for im in images:
        place_image(im.source, out / "images" / im.split / im.key)
    for split in SPLITS:
        members = [im for im in images if im.split == split]
        if not members:
            continue
        if "coco" in formats:
            write_json(out / "annotations" / f"{split}.json", coco_split(members, names))
        if "yolo" in formats:
            for im in members:
                target = (out / "labels" / split / im.key).with_suffix(".txt")
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp:
                    Path(tmp).write_text("".join(f"{x}\n" for x in yolo_lines(im.labels, im.size)))
    if "yolo" in formats:
        val = "images/val" if counts["val"] else "images/train"
        lines = ["train: images/train", f"val: {val}", f"nc: {len(names)}", "names:"]
        lines += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
        with atomic_path(out / "data.yaml") as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n")
    return counts
