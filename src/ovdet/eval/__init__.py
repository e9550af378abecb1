"""Evaluation that reproduces the papers' protocols: COCO, LVIS (r/c/f), base/novel, proposal AR,
region recognition with ground-truth boxes. Wraps faster-coco-eval (`pip install ovdet[eval]`)."""

from ovdet.eval.data import Split, coco_ovd_split, make_split
from ovdet.eval.detection import EvalResult, evaluate_detections
from ovdet.eval.recall import proposal_recall
from ovdet.eval.recognition import recognition_detections, recognize_dataset

__all__ = [
    "EvalResult",
    "Split",
    "coco_ovd_split",
    "evaluate_detections",
    "make_split",
    "proposal_recall",
    "recognition_detections",
    "recognize_dataset",
]
