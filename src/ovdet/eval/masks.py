"""Box-prompt mask quality: prompt SAM with each ground-truth box, compare with the GT mask."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ovdet.eval.recognition import gt_boxes_by_image, region_annotations
from ovdet.io.images import load_image
from ovdet.models.sam import SamBackend
from ovdet.ops.masks import mask_iou, rle_decode


def box_prompt_miou(
    sam: SamBackend, gt: dict[str, Any], images_dir: str | Path, progress: bool = True
) -> dict[str, float]:
    """Mean IoU of SAM's single box-prompt mask against every non-crowd GT mask, and s/image."""
    segs = {i: [a["segmentation"] for a in anns] for i, anns in region_annotations(gt).items()}
    boxes = gt_boxes_by_image(gt)
    ious, start = [], time.perf_counter()
    for im in tqdm(gt["images"], desc="box-prompt mIoU", unit="img", disable=not progress):
        if not segs[im["id"]]:
            continue
        image = load_image(Path(images_dir) / im["file_name"])
        pred = sam.predict_boxes(sam.set_image(image), boxes[im["id"]])
        target = torch.stack([rle_decode(s) for s in segs[im["id"]]]).bool()
        ious.append(mask_iou(pred.masks, target))
    all_ious = torch.cat(ious) if ious else torch.zeros(0)
    return {
        "mIoU": float(all_ious.mean()) if len(all_ious) else 0.0,
        "masks": len(all_ious),
        "s_per_image": (time.perf_counter() - start) / max(1, len(gt["images"])),
    }
