"""SAM's automatic "everything" mode: class-agnostic mask proposals from a grid of point prompts.

As in SAM's automatic mask generator: a regular grid of points over the image, each prompted
alone with three candidate masks; a candidate survives if its predicted IoU and its stability
score (IoU between the masks thresholded at logit +offset and -offset) pass thresholds; the
survivors' boxes go through NMS (ovdet's own op) and the best `max_proposals` are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ovdet.models.sam import SamBackend, SamImage
from ovdet.ops.masks import masks_to_boxes
from ovdet.ops.nms import nms
from ovdet.types import Regions


@dataclass
class EverythingConfig:
    points_per_side: int = 32
    iou_threshold: float = 0.88  # predicted IoU
    stability_threshold: float = 0.95
    stability_offset: float = 1.0  # in logits
    nms_threshold: float = 0.7  # box IoU
    min_area: int = 16  # pixels at the original resolution
    max_proposals: int = 300
    points_per_batch: int = 64


def point_grid(image_size: tuple[int, int], per_side: int) -> torch.Tensor:
    """(per_side**2, 2) xy points at the centres of a per_side x per_side grid over (H, W)."""
    h, w = image_size
    ys = (torch.arange(per_side) + 0.5) * h / per_side
    xs = (torch.arange(per_side) + 0.5) * w / per_side
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], -1)


def stability_score(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """(..., h, w) logits -> (...) |logits > offset| / |logits > -offset| (1 for an empty mask)."""
    high = (logits > offset).flatten(-2).sum(-1).float()
    low = (logits > -offset).flatten(-2).sum(-1).float()
    return torch.where(low > 0, high / low.clamp(min=1), torch.ones_like(low))


@torch.inference_mode()
def everything(sam: SamBackend, state: SamImage, cfg: EverythingConfig | None = None) -> Regions:
    """Class-agnostic proposals of one embedded image: boxes, masks, scores (predicted IoU);
    a progress bar over the point batches appears when the pass is slow."""
    cfg = cfg or EverythingConfig()
    keep_logits, keep_scores = [], []
    from tqdm import tqdm

    batches = point_grid(state.size, cfg.points_per_side).split(cfg.points_per_batch)
    # shown only when the pass takes over 2 s (a 32 x 32 grid at SAM-B on a CPU: minutes)
    for points in tqdm(batches, desc="SAM everything", unit="batch", leave=False, delay=2.0):
        logits, iou = sam.predict_points(state, points, multimask=True)
        logits, iou = logits.flatten(0, 1), iou.flatten()  # (N*K, h4, w4), (N*K,)
        ok = (iou >= cfg.iou_threshold) & (
            stability_score(logits, cfg.stability_offset) >= cfg.stability_threshold
        )
        keep_logits.append(logits[ok])
        keep_scores.append(iou[ok])
    logits, scores = torch.cat(keep_logits), torch.cat(keep_scores).float()
    h, w = state.size
    if len(logits) == 0:
        return Regions(torch.zeros(0, 4), (h, w), torch.zeros(0), masks=torch.zeros(0, h, w))
    masks = torch.cat([sam.postprocess(c, state) for c in logits.split(cfg.points_per_batch)])
    area = masks.flatten(1).sum(1)
    big = area >= cfg.min_area
    masks, scores = masks[big], scores[big].cpu()
    boxes = masks_to_boxes(masks).float()
    order = nms(boxes, scores, cfg.nms_threshold)[: cfg.max_proposals]
    return Regions(boxes[order], (h, w), scores[order].clamp(0, 1), masks=masks[order])
