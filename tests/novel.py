"""How well a detector names held-out novel objects: shared by the methods' learning tests."""

from pathlib import Path

import numpy as np
import torch

from ovdet.data.coco import letterbox
from ovdet.io.images import load_image
from ovdet.methods.vild.detector import load_detector
from ovdet.ops.boxes import xywh_to_xyxy


@torch.no_grad()
def novel_top1(
    folder: Path, val: dict, images: Path, text: torch.Tensor, novel: torch.Tensor
) -> float:
    """Top-1 accuracy of the detector's heads on the ground-truth boxes of novel objects."""
    model, spec = load_detector(folder)
    order = [c["id"] for c in sorted(val["categories"], key=lambda c: c["id"])]
    novel_ids = {order[i] for i in novel.nonzero()[:, 0].tolist()}
    right = []
    for im in val["images"]:
        anns = [a for a in val["annotations"] if a["image_id"] == im["id"]]
        if not anns:
            continue
        boxes = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
        pixels, box = letterbox(load_image(images / im["file_name"]), spec["side"])
        probs, _, _ = model.score_regions(model.backbone(pixels), [box.boxes(boxes)], text, novel)
        for a, pred in zip(anns, probs.argmax(1).tolist(), strict=True):
            if a["category_id"] in novel_ids:
                right.append(order[pred] == a["category_id"])
    return float(np.mean(right))
