"""An exported detector (`ovdet export`) behind the `Detector` protocol, run by onnxruntime.

The vocabulary is the one baked into the file: `detect(image, vocab)` checks that `vocab` names
the same classes in the same order (a different one needs a new export). Letterboxing before
and mapping boxes back after are ovdet's own, so results land in the image's pixels as a
`ViLDDetector`'s do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ovdet.data.coco import letterbox
from ovdet.errors import FormatError, OvdetError, VocabularyError, WeightsNotFoundError
from ovdet.methods.vild.export import FORMAT, METADATA_KEY
from ovdet.methods.vild.model import ViLDConfig, select_scored
from ovdet.recognize.inputs import ImageInput, as_image
from ovdet.types import Regions
from ovdet.vocab.parse import VocabularyInput, as_vocabulary


def is_onnx(name_or_path: str | os.PathLike) -> bool:
    """Whether `name_or_path` names an .onnx file (existing or not)."""
    return str(name_or_path).lower().endswith(".onnx")


class OnnxDetector:
    """A detector exported by `ovdet export`: `detect(image, vocabulary) -> Regions`.

    Args:
        path: the .onnx file.
        device: "cpu" (onnxruntime's CPU provider) or "cuda" (its CUDA provider, if installed).
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise OvdetError(
                "running an .onnx model needs onnxruntime: pip install 'ovdet[export]'"
            ) from None
        path = Path(path)
        if not path.is_file():
            raise WeightsNotFoundError(f"no such ONNX model: {path} (make one with ovdet export)")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # onnxruntime raises its own classes for unreadable files
            first = str(e).splitlines()[0]
            raise FormatError(f"{path} is not a readable ONNX model: {first}") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if meta is None:
            raise FormatError(
                f"{path} is an ONNX model of something else (no {METADATA_KEY!r} metadata): "
                "export an ovdet checkpoint with ovdet export"
            )
        self.meta: dict[str, Any] = json.loads(meta)
        if self.meta.get("format") != FORMAT:
            raise FormatError(
                f"{path} is an ovdet export of format {self.meta.get('format')!r}; "
                f"this ovdet reads format {FORMAT}: re-export it"
            )
        self.names: list[str] = list(self.meta["names"])
        self.base_names: list[str] = list(self.meta["base_names"])  # the checkpoint's training
        self.config = ViLDConfig(**self.meta["vild"])
        self.path = path

    def check_vocabulary(self, vocab: VocabularyInput) -> None:
        """A one-line `VocabularyError` unless `vocab` names the exported classes, in order."""
        names = list(as_vocabulary(vocab).names)
        if [n.lower() for n in names] != [n.lower() for n in self.names]:
            shown = ", ".join(self.names[:8]) + (", ..." if len(self.names) > 8 else "")
            raise VocabularyError(
                f"{self.path.name} was exported for {len(self.names)} names ({shown}), got "
                f"{len(names)} ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}): "
                "pass the same vocabulary, or export again with this one"
            )

    def detect(self, image: ImageInput, vocab: VocabularyInput) -> Regions:
        """(3, H, W) uint8 image (or a path, PIL image or array) -> labelled Regions in image
        pixels (labels index the exported names, which `vocab` must repeat)."""
        (regions,) = self.detect_batch([image], vocab)
        return regions

    def detect_batch(self, images: list[ImageInput], vocab: VocabularyInput) -> list[Regions]:
        """One Regions per image (the graph takes one image per run)."""
        self.check_vocabulary(vocab)
        return [self._detect(as_image(image)) for image in images]

    def run(self, pixels: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
        """The graph's raw outputs for (1, 3, S, S) normalised pixels resized to `size` (h, w)."""
        feed = {
            "pixels": pixels.float().numpy(),
            "size": torch.tensor(size, dtype=torch.float32).numpy(),
        }
        return [torch.from_numpy(x) for x in self.session.run(None, feed)]

    def _detect(self, image: torch.Tensor) -> Regions:
        pixels, box = letterbox(image, int(self.meta["side"]), short=self.meta.get("short_side", 0))
        out = self.run(pixels, box.resized)
        if self.meta["nms"]:
            boxes, scores, labels = out
        else:  # NMS left to the caller: ViLD's own selection
            all_boxes, pair_scores = out
            rows, labels, scores = select_scored(all_boxes, pair_scores, self.config)
            boxes = all_boxes[rows]
        return Regions(box.invert_boxes(boxes), box.original, scores=scores, labels=labels.long())
