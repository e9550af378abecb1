"""Random COCO-style ground truth and detections for evaluation tests."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ovdet.ops.masks import rle_encode


def box_mask(h: int, w: int, bbox: list[float]) -> dict:
    m = np.zeros((h, w), bool)
    x, y, bw, bh = (int(round(v)) for v in bbox)
    m[y : y + max(bh, 1), x : x + max(bw, 1)] = True
    return rle_encode(m)


def synthetic(seed: int, n_img: int = 25, n_cat: int = 6, masks: bool = False):
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    images = [{"id": i + 1, "width": w, "height": h, "file_name": f"{i}.png"} for i in range(n_img)]
    cats = [{"id": 3 * c + 2, "name": f"thing{c}"} for c in range(n_cat)]
    anns, dets = [], []
    for im in images:
        for _ in range(rng.integers(0, 7)):  # some images stay empty
            x, y = rng.uniform(0, w - 40), rng.uniform(0, h - 40)
            bw, bh = rng.uniform(4, 40, 2)
            c = cats[rng.integers(n_cat)]["id"]
            ann = {
                "id": len(anns) + 1,
                "image_id": im["id"],
                "category_id": c,
                "bbox": [x, y, bw, bh],
                "area": float(bw * bh),
                "iscrowd": int(rng.random() < 0.1),
            }
            if masks:
                ann["segmentation"] = box_mask(h, w, ann["bbox"])
                ann["area"] = float(np.count_nonzero(_decode(ann["segmentation"])))
            anns.append(ann)
            if rng.random() < 0.85:
                j = rng.normal(0, 3, 4)
                cat = c if rng.random() < 0.8 else cats[rng.integers(n_cat)]["id"]
                box = [x + j[0], y + j[1], max(1.0, bw + j[2]), max(1.0, bh + j[3])]
                dets.append(_det(im["id"], cat, box, rng.random(), masks, h, w))
        for _ in range(rng.integers(0, 4)):
            box = [*rng.uniform(0, 100, 2), *rng.uniform(2, 50, 2)]
            dets.append(
                _det(im["id"], cats[rng.integers(n_cat)]["id"], box, rng.random(), masks, h, w)
            )
    return {"images": images, "categories": cats, "annotations": anns}, dets


def _det(image_id, cat, box, score, masks, h, w):
    d = {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(v) for v in box],
        "score": float(score),
    }
    if masks:
        d["segmentation"] = box_mask(h, w, d["bbox"])
    return d


def _decode(rle):
    from ovdet.ops.masks import rle_decode

    return rle_decode(rle).numpy()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose pixels are nearly absent: a bomb that
    must be refused from its header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
