"""`ovdet export`: a ViLD checkpoint (ViLD, RKD or CoDet) and a vocabulary -> one ONNX file.

The graph is `methods.vild.graph.DetectorGraph` traced by torch's TorchScript exporter at the
checkpoint's letterbox side (batch 1): inputs `pixels` (1, 3, S, S) float32, the image letterboxed
to S (resized to fit, padded at the bottom and right) and ImageNet-normalised, and `size` (2,)
float32, the (H, W) it was resized to; outputs `boxes`, `scores` (and `labels` with NMS) in the
input's pixels, their count dynamic. The file's metadata (key "ovdet", JSON) carries what a
runtime needs besides the graph: the names in order, the side, the normalisation, whether NMS is
inside, and ViLD's selection settings for a caller that runs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ovdet.data.coco import IMAGENET_MEAN, IMAGENET_STD, letterbox
from ovdet.errors import OvdetError
from ovdet.io.atomic import atomic_path
from ovdet.methods.vild.graph import DetectorGraph
from ovdet.ops.exportable import OPSET

METADATA_KEY = "ovdet"
FORMAT = 1


def export_onnx(
    detector: Any, vocab: Any, out: str | os.PathLike, nms: bool = False, source: str = ""
) -> dict[str, Any]:
    """Write `detector` (a `ViLDDetector`) with `vocab`'s text embeddings folded in to `out`
    (atomically) -> the metadata written.

    Args:
        detector: the loaded checkpoint.
        vocab: a `Vocabulary` (its names are the exported model's classes, in order).
        out: the .onnx path.
        nms: put ViLD's selection and per-class NMS in the graph (else the caller runs it).
        source: what the model came from (recorded in the metadata).
    """
    try:
        import onnx
    except ImportError:
        raise OvdetError(
            "ONNX export needs the onnx package: pip install 'ovdet[export]'"
        ) from None
    model, spec = detector.model, detector.spec
    if model.mask_head is not None:
        warnings.warn("the mask head is not exported: the ONNX model gives boxes", stacklevel=2)
    text = detector.text.embed(vocab)
    graph = DetectorGraph(model, text, vocab.novel_mask(detector.base_names), nms=nms).eval()
    side = int(spec["side"])
    example = torch.randint(0, 256, (3, side, side), dtype=torch.uint8)
    pixels, box = letterbox(example, side)
    outputs = ["boxes", "scores", "labels"] if nms else ["boxes", "scores"]
    meta = {
        "format": FORMAT,
        "names": list(vocab.names),
        "base_names": list(detector.base_names),
        "side": side,
        "short_side": int(spec.get("short_side", 0)),  # the letterbox rule (see Letterbox.fit)
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "nms": nms,
        "outputs": outputs,
        "vild": dataclasses.asdict(model.config),
        "source": source,
    }
    out = Path(out)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph.to("cpu"),
            (pixels, torch.tensor(box.resized, dtype=torch.float32)),
            str(tmp),
            input_names=["pixels", "size"],
            output_names=outputs,
            dynamic_axes={name: {0: "detections"} for name in outputs},
            opset_version=OPSET,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        proto.producer_name = "ovdet"
        onnx.save(proto, str(tmp))
    return meta


CHECK_FLOOR = 1e-3  # detections below this score may swap places between runtimes


def compare(
    detector: Any, exported: Any, image: Any, vocab: Any, floor: float = CHECK_FLOOR
) -> tuple[int, float, float]:
    """Detect `image` with the torch detector and its export -> (detections compared, largest
    box difference in pixels, largest score difference). Detections scoring below `floor` are
    left out: float rounding between runtimes reorders near-equal low scores.

    Raises OvdetError when the two disagree in the count, order or classes above `floor`."""
    ref, got = detector.detect(image, vocab), exported.detect(image, vocab)
    k, kx = int((ref.scores >= floor).sum()), int((got.scores >= floor).sum())
    if k != kx or not torch.equal(ref.labels[:k], got.labels[:k]):
        raise OvdetError(
            f"the export disagrees with the torch detector: {kx} vs {k} detections scoring >= "
            f"{floor} (classes {got.labels[:kx].tolist()} vs {ref.labels[:k].tolist()})"
        )
    if k == 0:
        return 0, 0.0, 0.0
    box = (ref.xyxy[:k] - got.xyxy[:k]).abs().max().item()
    return k, box, (ref.scores[:k] - got.scores[:k]).abs().max().item()
