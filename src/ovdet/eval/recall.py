"""Class-agnostic proposal recall (ViLD's Table 1 protocol): AR@100/300/1000.

Every proposal may match a ground-truth box of any category (useCats=0). AR@k is the recall with
the k highest-scoring proposals per image, averaged over IoU thresholds 0.5:0.05:0.95. The novel
variant keeps only ground truth of novel categories, so proposals on base objects neither help nor
hurt.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from typing import Any

from ovdet.eval.data import Split, load_detections, load_gt
from ovdet.eval.detection import _with_areas


def proposal_recall(
    gt: str | os.PathLike | dict[str, Any],
    proposals: str | os.PathLike | list[dict[str, Any]],
    budgets: Sequence[int] = (100, 300, 1000),
    split: Split | None = None,
) -> dict[str, float]:
    """AR@k in [0, 100] for each budget k, over all ground truth and (with a split) over novel.

    Args:
        gt: COCO/LVIS dataset (path or dict).
        proposals: COCO results (path or list); category ids are ignored.
        budgets: proposal counts per image.
        split: adds "AR@k_novel" computed on novel-category ground truth only.
    """
    gt_data = load_gt(gt)
    props = load_detections(proposals, gt_data, "bbox")
    out = {f"AR@{k}": v for k, v in _recall(gt_data, props, budgets).items()}
    if split is not None:
        novel_gt = {
            **gt_data,
            "annotations": [a for a in gt_data["annotations"] if a["category_id"] in split.novel],
        }
        out.update({f"AR@{k}_novel": v for k, v in _recall(novel_gt, props, budgets).items()})
    return out


def _recall(
    gt: dict[str, Any], props: list[dict[str, Any]], budgets: Sequence[int]
) -> dict[int, float]:
    from faster_coco_eval import COCO, COCOeval_faster

    if not any(not a.get("iscrowd", 0) for a in gt["annotations"]):
        return {k: -1.0 for k in budgets}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(_with_areas(gt))
        coco_dt = coco_gt.loadRes(props)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=lambda *a: None)
        ev.params.useCats = 0
        ev.params.maxDets = sorted(budgets)
        ev.evaluate()
        ev.accumulate()
    recall = ev.eval["recall"][:, 0, 0, :]  # (T, M): one pseudo-category, area "all"
    out = {}
    for m, k in enumerate(ev.params.maxDets):
        r = recall[:, m]
        out[k] = round(float(r[r > -1].mean() * 100), 3) if (r > -1).any() else -1.0
    return out
