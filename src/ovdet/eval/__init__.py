"""Evaluation that reproduces the papers' protocols: COCO, LVIS (r/c/f), base/novel, proposal AR,
region recognition with ground-truth boxes. Wraps faster-coco-eval (`pip install ovdet[eval]`)."""

from ovdet._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Split": "ovdet.eval.data",
        "coco_ovd_split": "ovdet.eval.data",
        "make_split": "ovdet.eval.data",
        "EvalResult": "ovdet.eval.detection",
        "evaluate_detections": "ovdet.eval.detection",
        "proposal_recall": "ovdet.eval.recall",
        "recognition_detections": "ovdet.eval.recognition",
        "recognize_dataset": "ovdet.eval.recognition",
    },
)
