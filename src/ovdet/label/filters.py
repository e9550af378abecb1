"""Which detections become labels: a score threshold per class, class-agnostic NMS (one object
named by two synonyms keeps its best name), and a cap per image."""

from __future__ import annotations

from typing import Any

import torch

from ovdet.errors import ConfigError
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.ops.nms import nms
from ovdet.types import Vocabulary


def parse_min_score(text: str, vocab: Vocabulary) -> torch.Tensor:
    """--min-score: "0.3" for every class, or "cat=0.5, traffic cone=0.2" with an optional bare
    default among them ("0.3, cat=0.5"; default 0.3) -> (C,) thresholds in the vocabulary's
    order. Unknown names and values outside [0, 1] are refused in one line."""
    default, named = 0.3, {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, _, value = part.rpartition("=")
        try:
            score = float(value)
        except ValueError:
            raise ConfigError(f"--min-score: {part!r} is not a score or name=score") from None
        if not 0 <= score <= 1:
            raise ConfigError(f"--min-score: {part!r} is not in [0, 1]")
        if not name:
            default = score
            continue
        key = name.strip().lower()
        index = {n.lower(): i for i, n in enumerate(vocab.names)}
        if key not in index:
            raise ConfigError(
                f"--min-score names {name.strip()!r}, which is not in the vocabulary "
                f"({', '.join(vocab.names[:6])}{', ...' if len(vocab.names) > 6 else ''})"
            )
        named[index[key]] = score
    thresholds = torch.full((len(vocab.names),), default, dtype=torch.float64)
    for i, score in named.items():
        thresholds[i] = score
    return thresholds


def keep_labels(
    records: list[dict[str, Any]],
    thresholds: torch.Tensor,
    agnostic_iou: float = 0.0,
    max_per_image: int = 100,
) -> list[dict[str, Any]]:
    """One image's COCO result records (category_id = class index + 1) -> those kept as labels,
    best first: score >= its class's threshold, then (with `agnostic_iou` > 0) NMS across
    classes at that IoU, then the best `max_per_image`."""
    kept = [r for r in records if r["score"] >= float(thresholds[r["category_id"] - 1])]
    kept.sort(key=lambda r: -r["score"])
    if agnostic_iou > 0 and len(kept) > 1:
        boxes = xywh_to_xyxy(torch.tensor([r["bbox"] for r in kept], dtype=torch.float32))
        scores = torch.tensor([r["score"] for r in kept])
        kept = [kept[i] for i in nms(boxes, scores, agnostic_iou).tolist()]
    return kept[:max_per_image]
