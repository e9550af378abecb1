"""Detection AP with the COCO and LVIS protocols, on faster-coco-eval.

- COCO: AP, AP50, AP75, AP_s/m/l over the ground truth's categories, at most 100 detections per
  image and category (pycocotools' rule).
- LVIS: the 300 highest-scoring detections per image across all categories (lvis-api's
  LVISResults), federated matching (detections of a category neither annotated nor listed in the
  image's `neg_category_ids` are ignored; unmatched detections of `not_exhaustive_category_ids`
  do not count as false positives), and AP_r / AP_c / AP_f over the `frequency` groups.
- A base/novel split adds AP and AP50 over each group of categories (per-category AP averaged
  within the group, categories without ground truth skipped).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ovdet.eval.data import FREQUENCIES, Split, cap_per_image, load_detections, load_gt

log = logging.getLogger(__name__)

LVIS_MAX_DETS = 300
COCO_MAX_DETS = 100


@dataclass
class EvalResult:
    """What one evaluation measured.

    Attributes:
        metrics: name -> value in [0, 100] (AP, AP50, ...; -1 where undefined).
        per_category: one row per category: id, name, frequency, group, AP, AP50, num_gt.
        precision: (T, R, K) precision at IoU thresholds T, recall points R and categories K
            (area "all", largest detection budget); -1 where undefined. For PR curves.
        iou_thresholds: (T,); recall_points: (R,); category_ids: K ids in `precision` order.
    """

    protocol: str
    iou_type: str
    metrics: dict[str, float]
    per_category: list[dict[str, Any]]
    precision: np.ndarray
    iou_thresholds: np.ndarray
    recall_points: np.ndarray
    category_ids: list[int]
    split: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "iou_type": self.iou_type,
            "split": self.split,
            "metrics": self.metrics,
            "per_category": self.per_category,
            "notes": self.notes,
        }


def evaluate_detections(
    gt: str | os.PathLike | dict[str, Any],
    dt: str | os.PathLike | list[dict[str, Any]],
    iou_type: str = "bbox",
    protocol: str = "coco",
    split: Split | None = None,
    max_dets: int | None = None,
) -> EvalResult:
    """Evaluate detections against ground truth.

    Args:
        gt: COCO/LVIS dataset (path or dict).
        dt: COCO results (path or list).
        iou_type: "bbox" or "segm".
        protocol: "coco" or "lvis".
        split: optional base/novel split (see `make_split`).
        max_dets: override the detection budget (COCO: per image and category; LVIS: per image).
    """
    if protocol not in ("coco", "lvis"):
        raise ValueError(f"protocol must be 'coco' or 'lvis', got {protocol!r}")
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt_data = load_gt(gt, iou_type)
    dets = load_detections(dt, gt_data, iou_type)
    lvis = protocol == "lvis"
    notes = []
    if lvis:
        _check_frequencies(gt_data)
        dets = cap_per_image(dets, max_dets or LVIS_MAX_DETS)
        note = _federated_note(gt_data)
        if note:
            log.warning(note)
            notes.append(note)
    budget = max_dets or (LVIS_MAX_DETS if lvis else COCO_MAX_DETS)
    coco_eval = _run(gt_data, dets, iou_type, lvis, budget)
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # (T, R, K) area all, max budget
    cat_ids = list(coco_eval.params.catIds)
    rows = _per_category(gt_data, precision, coco_eval.params.iouThrs, split)
    metrics = _summary(coco_eval, rows, lvis, split)
    return EvalResult(
        protocol,
        iou_type,
        metrics,
        rows,
        precision,
        np.asarray(coco_eval.params.iouThrs),
        np.asarray(coco_eval.params.recThrs),
        cat_ids,
        split.name if split else None,
        notes,
    )


def _federated_note(gt: dict[str, Any]) -> str | None:
    """A warning when LVIS's federated matching will ignore most wrong labels: an image's
    detections of a category neither annotated nor in its `neg_category_ids` do not count."""
    missing = sum("neg_category_ids" not in im for im in gt["images"])
    if not missing:
        return None
    return (
        f"LVIS protocol: {missing} of {len(gt['images'])} images have no 'neg_category_ids', so "
        "detections of categories not annotated there are ignored, not counted as false positives "
        "(federated matching); use --protocol coco for an exhaustively annotated set"
    )


def _check_frequencies(gt: dict[str, Any]) -> None:
    from ovdet.errors import FormatError

    for c in gt["categories"]:
        if c.get("frequency") not in FREQUENCIES:
            raise FormatError(
                f"the LVIS protocol needs a 'frequency' of r/c/f for every category; "
                f"category {c['id']} ({c['name']!r}) has {c.get('frequency')!r}"
            )


def _run(gt: dict[str, Any], dets: list[dict[str, Any]], iou_type: str, lvis: bool, budget: int):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(_with_areas(gt))
        coco_dt = coco_gt.loadRes(dets) if dets else coco_gt.loadRes([])
        ev = COCOeval_faster(
            coco_gt, coco_dt, iouType=iou_type, lvis_style=lvis, print_function=lambda *a: None
        )
        ev.params.maxDets = [budget] if lvis else sorted({1, 10, budget})
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _with_areas(gt: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy whose annotations all have 'area' and 'iscrowd' (box area if absent)."""
    anns = []
    for a in gt["annotations"]:
        if "area" not in a or "iscrowd" not in a:
            a = {
                **a,
                "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                "iscrowd": a.get("iscrowd", 0),
            }
        anns.append(a)
    return {**gt, "annotations": anns}


def _ap(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean() * 100) if valid.size else -1.0


def _per_category(
    gt: dict[str, Any], precision: np.ndarray, iou_thrs: np.ndarray, split: Split | None
) -> list[dict[str, Any]]:
    counts: dict[Any, int] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0):
            counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    i50 = int(np.argmin(np.abs(np.asarray(iou_thrs) - 0.5)))
    rows = []
    for k, c in enumerate(sorted(gt["categories"], key=lambda c: c["id"])):
        group = None
        if split is not None:
            group = "novel" if c["id"] in split.novel else "base" if c["id"] in split.base else None
        rows.append(
            {
                "id": c["id"],
                "name": c["name"],
                "frequency": c.get("frequency"),
                "group": group,
                "num_gt": counts.get(c["id"], 0),
                "AP": _ap(precision[:, :, k]),
                "AP50": _ap(precision[i50, :, k]),
            }
        )
    return rows


def _group_mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    values = [r[key] for r in rows if all(r[k] == v for k, v in where.items()) and r[key] > -1]
    return float(np.mean(values)) if values else -1.0


def _summary(
    ev: Any, rows: list[dict[str, Any]], lvis: bool, split: Split | None
) -> dict[str, float]:
    s = ev.stats_as_dict
    metrics = {
        "AP": s["AP_all"],
        "AP50": s["AP_50"],
        "AP75": s["AP_75"],
        "APs": s.get("AP_small", -1.0),
        "APm": s.get("AP_medium", -1.0),
        "APl": s.get("AP_large", -1.0),
    }
    metrics = {k: (v * 100 if v > -1 else -1.0) for k, v in metrics.items()}
    if lvis:
        for f in FREQUENCIES:
            metrics[f"AP{f}"] = _group_mean(rows, "AP", frequency=f)
    if split is not None:
        for group in ("base", "novel"):
            metrics[f"AP_{group}"] = _group_mean(rows, "AP", group=group)
            metrics[f"AP50_{group}"] = _group_mean(rows, "AP50", group=group)
    return {k: round(v, 3) for k, v in metrics.items()}


TABLE_KEYS = ("AP", "AP50", "APr", "APc", "APf")


def timed_lvis_row(
    gt: dict[str, Any], produce: Any, extra: Any = None, protocol: str = "lvis"
) -> dict[str, float]:
    """One row of a method table: run `produce()` (every image's detections of `gt`, a list of
    COCO results), score it with the LVIS protocol (AP, AP50, AP_r/c/f) or, with
    `protocol="coco"`, COCO's (AP, AP50, AP75); seconds per image, plus what
    `extra(detections) -> dict` adds."""
    import time

    start = time.perf_counter()
    dets = produce()
    seconds = (time.perf_counter() - start) / max(1, len(gt["images"]))
    m = evaluate_detections(gt, dets, protocol=protocol).metrics
    keys = TABLE_KEYS if protocol == "lvis" else ("AP", "AP50", "AP75")
    row = {k: m[k] for k in keys} | {"s_per_image": round(seconds, 4)}
    return row | (extra(dets) if extra else {})


def protocol_of(gt: dict[str, Any]) -> str:
    """ "lvis" when every category has a frequency (r/c/f), else "coco"."""
    cats = gt.get("categories") or []
    return "lvis" if cats and all("frequency" in c for c in cats) else "coco"
