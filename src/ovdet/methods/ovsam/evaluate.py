"""Open-Vocabulary SAM's table on the shapes world: per GT object of det-val, prompted by its box
or by an interior point, the top-1 name (all / base / novel classes) and the mask IoU, for
feature-crop (frozen CLIP pooled in the region, shapes-sam's mask), the head alone, and OV-SAM
(the ensemble, its own decoder)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


@torch.inference_mode()
def evaluate_ovsam(model: Any, sam: Any, count: int = 500, world_seed: int = 0, progress=True):
    """`model` an `OVSam`, `sam` the SAM backend of the feature-crop baseline -> rows of
    {"all", "base", "novel" (top-1 accuracy; None for a group with no objects), "mIoU"} per
    (prompt, method), and seconds per image."""
    from ovdet.data.shapes.generate import WorldConfig, scene_for
    from ovdet.methods.ovsam.clip2sam import shapes_vocabulary
    from ovdet.ops.masks import interior_points, mask_iou, masks_to_boxes

    vocab, novel = shapes_vocabulary()
    world = WorldConfig(seed=world_seed)
    hits: dict[tuple[str, str], list] = {}
    ious: dict[tuple[str, str], list] = {}
    flags: list[torch.Tensor] = []
    start = time.perf_counter()
    for i in tqdm(range(count), desc="ovsam eval", unit="img", disable=not progress):
        scene = scene_for(world.seed, "det-val", i, world)
        keep = [k for k, m in enumerate(scene.masks) if m.any()]
        if not keep:
            continue
        image = torch.from_numpy(scene.image).permute(2, 0, 1)
        truth = torch.from_numpy(np.stack([scene.masks[k] for k in keep]))
        cats = torch.tensor([scene.objects[k].category for k in keep])
        gt_boxes = masks_to_boxes(truth).float()
        points = interior_points(truth)
        flags.append(novel[cats])
        sam_state = sam.set_image(image)
        ours = model.backend.set_image(image)
        for prompt in ("box", "point"):
            if prompt == "box":
                sam_masks = sam.predict_boxes(sam_state, gt_boxes).masks
                our_masks = model.backend.predict_boxes(ours, gt_boxes).masks
                sam_boxes = our_boxes = gt_boxes
            else:
                sam_masks = _point_masks(sam, sam_state, points)
                our_masks = _point_masks(model.backend, ours, points)
                sam_boxes = _boxes_or_points(masks_to_boxes(sam_masks).float(), points)
                our_boxes = _boxes_or_points(masks_to_boxes(our_masks).float(), points)
            crop = model.probabilities(image, sam_boxes, vocab)["clip"]
            p = model.probabilities(image, our_boxes, vocab)
            for name, probs, masks in (
                ("feature-crop", crop, sam_masks),
                ("head only", p["head"], our_masks),
                ("OV-SAM", p["ovsam"], our_masks),
            ):
                hits.setdefault((prompt, name), []).append(probs.argmax(1) == cats)
                ious.setdefault((prompt, name), []).append(mask_iou(masks, truth))
    seconds = (time.perf_counter() - start) / count
    is_novel = torch.cat(flags)
    rows = {}
    for key, h in hits.items():
        h = torch.cat(h).float()
        rows[key] = {
            "all": float(h.mean()),
            "base": _mean_or_none(h[~is_novel]),
            "novel": _mean_or_none(h[is_novel]),
            "mIoU": float(torch.cat(ious[key]).float().mean()),
        }
    return rows, seconds


def _mean_or_none(x: torch.Tensor) -> float | None:
    """The mean of `x`, or None when it is empty (no object of that group was drawn)."""
    return float(x.mean()) if len(x) else None


def _point_masks(sam: Any, state: Any, points: torch.Tensor) -> torch.Tensor:
    logits, iou = sam.predict_points(state, points, multimask=True)
    return sam.postprocess(logits[torch.arange(len(points)), iou.argmax(1)], state)


def _boxes_or_points(xyxy: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    empty = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
    xyxy[empty] = torch.cat([points[empty] - 4, points[empty] + 4], 1).clamp(min=0)
    return xyxy
