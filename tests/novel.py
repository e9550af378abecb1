"""How well a detector names held-out novel objects: shared by the methods' learning tests."""

from collections import Counter
from pathlib import Path

import torch

from ovdet.data.coco import letterbox
from ovdet.io.images import load_image
from ovdet.methods.vild.detector import load_detector
from ovdet.ops.boxes import xywh_to_xyxy


@torch.no_grad()
def answers(folder: Path, val: dict, images: Path, text: torch.Tensor, novel: torch.Tensor):
    """(true category id, predicted category id) for every ground-truth box of `val`, named by
    the detector's heads among all of `val`'s categories (`text` rows in id order)."""
    model, spec = load_detector(folder)
    order = [c["id"] for c in sorted(val["categories"], key=lambda c: c["id"])]
    pairs = []
    for im in val["images"]:
        anns = [a for a in val["annotations"] if a["image_id"] == im["id"]]
        if not anns:
            continue
        boxes = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
        pixels, box = letterbox(load_image(images / im["file_name"]), spec["side"])
        probs, _, _ = model.score_regions(model.backbone(pixels), [box.boxes(boxes)], text, novel)
        pairs += [
            (a["category_id"], order[p])
            for a, p in zip(anns, probs.argmax(1).tolist(), strict=True)
        ]
    return pairs


def per_class(pairs, ids) -> dict[int, float]:
    """Top-1 accuracy of each category in `ids` that has boxes."""
    total, right = Counter(t for t, _ in pairs), Counter(t for t, p in pairs if t == p)
    return {c: right[c] / total[c] for c in ids if total[c]}


def novel_top1(
    folder: Path, val: dict, images: Path, text: torch.Tensor, novel: torch.Tensor
) -> float:
    """Top-1 accuracy of the detector's heads on the ground-truth boxes of novel objects."""
    pairs, ids = novel_answers(folder, val, images, text, novel)
    right = [t == p for t, p in pairs if t in ids]
    return sum(right) / len(right)


def novel_answers(folder, val, images, text, novel):
    """`answers` and the set of novel category ids."""
    order = [c["id"] for c in sorted(val["categories"], key=lambda c: c["id"])]
    ids = {order[i] for i in novel.nonzero()[:, 0].tolist()}
    return answers(folder, val, images, text, novel), ids
