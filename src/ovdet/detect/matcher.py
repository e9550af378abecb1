"""Assign ground truth to anchors or proposals by IoU, and sample a balanced training subset."""

from __future__ import annotations

import torch

from ovdet.ops.boxes import box_iou

BACKGROUND, IGNORE = -1, -2


def match(
    boxes: torch.Tensor,
    gt: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
    allow_low_quality: bool = False,
) -> torch.Tensor:
    """Match each of N boxes to a ground-truth index.

    Args:
        boxes: (N, 4) xyxy anchors or proposals.
        gt: (G, 4) xyxy ground-truth boxes.
        fg_iou: IoU at or above which a box is foreground.
        bg_iou: IoU below which a box is background; in between is ignored.
        allow_low_quality: also make each ground truth's best box(es) foreground (RPN rule),
            so that no object is left without a positive anchor.

    Returns:
        (N,) int64: the matched ground-truth index, BACKGROUND (-1) or IGNORE (-2).
    """
    n = boxes.shape[0]
    if gt.shape[0] == 0:
        return torch.full((n,), BACKGROUND, dtype=torch.int64, device=boxes.device)
    iou = box_iou(gt, boxes)  # (G, N)
    best, idx = iou.max(dim=0)
    out = torch.where(best >= fg_iou, idx, torch.full_like(idx, IGNORE))
    out = torch.where(best < bg_iou, torch.full_like(idx, BACKGROUND), out)
    if allow_low_quality:
        best_per_gt = iou.max(dim=1, keepdim=True).values  # (G, 1)
        _, box_idx = ((iou == best_per_gt) & (best_per_gt > 0)).nonzero(as_tuple=True)
        out[box_idx] = idx[box_idx]
    return out


def sample(
    matches: torch.Tensor,
    batch_size: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positives (matches >= 0) and negatives (BACKGROUND), at most `batch_size` in all
    and at most `positive_fraction` of it positive. Returns (positive indices, negative indices)."""
    pos = (matches >= 0).nonzero()[:, 0]
    neg = (matches == BACKGROUND).nonzero()[:, 0]
    n_pos = min(len(pos), int(batch_size * positive_fraction))
    n_neg = min(len(neg), batch_size - n_pos)
    pos = pos[torch.randperm(len(pos), generator=generator, device="cpu")[:n_pos].to(pos.device)]
    neg = neg[torch.randperm(len(neg), generator=generator, device="cpu")[:n_neg].to(neg.device)]
    return pos, neg
