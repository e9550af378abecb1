"""The front door: two protocols every method speaks, and `load` for any model by name.

- `Detector.detect(image, vocabulary) -> Regions`: find and name objects (ViLD checkpoints;
  RegionSpot over SAM's everything-mode or given proposals).
- `Recognizer.recognize(image, regions, vocabulary) -> Regions`: name given regions (CLIP on
  crops or on one dense map; RegionSpot).

`load(name_or_path)` reads what the checkpoint says it is (the `kind` a trainer writes into
spec.json, a ViLD spec's fields, or a transformers config's `model_type`) and returns the
matching object: a `Detector`, a `Recognizer`, a CLIP (`VisionLanguageModel`) or a SAM backend.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol, runtime_checkable

import torch

from ovdet.errors import FormatError, WeightsNotFoundError
from ovdet.models.bundled import BUNDLED, checkpoint_folder, spec_kind
from ovdet.types import Regions, Vocabulary


@runtime_checkable
class Detector(Protocol):
    def detect(self, image: torch.Tensor, vocab: Vocabulary) -> Regions:
        """(3, H, W) uint8 image -> labelled Regions in image pixels (labels index `vocab`)."""
        ...


@runtime_checkable
class Recognizer(Protocol):
    def recognize_regions(
        self, image: torch.Tensor, regions: Regions, vocab: Vocabulary
    ) -> Regions:
        """(3, H, W) uint8 image and its Regions -> the same regions labelled from `vocab`."""
        ...


def checkpoint_kind(name_or_path: str | os.PathLike) -> str:
    """What the checkpoint at `name_or_path` is: "vild", "regionspot", "ovsam", "sam2clip", "clip",
    "sam", or "onnx" (a detector exported by `ovdet export`).

    Bundled names answer from the bundled table; a folder from its spec.json (`kind`, or a ViLD
    spec's "vild" field) or config.json (`model_type`); anything else is taken for a hub id and
    asked for its config (hub ids of CLIP and SAM models)."""
    name = str(name_or_path)
    if name in BUNDLED:
        return BUNDLED[name].kind
    from ovdet.methods.vild.onnx_detector import is_onnx

    if is_onnx(name):
        return "onnx"
    from ovdet.models.registry import looks_like_path

    folder = checkpoint_folder(name)
    if looks_like_path(name) and not folder.is_dir():
        raise WeightsNotFoundError(
            f"no such checkpoint folder: {folder} (bundled models: {', '.join(BUNDLED)})"
        )
    spec = folder / "spec.json"
    if spec.is_file():
        try:
            data = json.loads(spec.read_text())
        except json.JSONDecodeError as e:
            raise FormatError(f"{spec} is not valid JSON: {e}") from None
        kind = spec_kind(data)
        if kind is not None:
            return kind
        raise FormatError(f"{spec} names no model kind ovdet knows: {data.get('kind')!r}")
    from ovdet.models.registry import CLIP_ALIASES, load_weights, model_type_of
    from ovdet.models.sam import SAM_ALIASES

    model_type = load_weights(model_type_of, name, {**CLIP_ALIASES, **SAM_ALIASES}, "model")
    kinds = {"clip": "clip", "ovdet-shapes-clip": "clip", "sam": "sam"}
    if model_type not in kinds:
        raise FormatError(f"{name!r} is a {model_type!r} model; ovdet loads {sorted(kinds)}")
    return kinds[model_type]


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", **options: Any):
    """Any model ovdet knows, by bundled name, alias, hub id or folder.

    Returns a `ViLDDetector` (Detector and Recognizer), an `OnnxDetector` (an .onnx file that
    `ovdet export` wrote), a `RegionSpotRecognizer` (Recognizer and Detector), an `OVSam`
    (Recognizer, and points -> named masks), a CLIP `VisionLanguageModel`, or a `SamBackend`
    (`Sam2ClipBackend` for a SAM2CLIP run).
    `options` go to the class (e.g. `templates`, `text_cache` for ViLD).
    """
    kind = checkpoint_kind(name_or_path)
    if kind == "vild":
        from ovdet.methods.vild.detector import ViLDDetector

        return ViLDDetector(name_or_path, device=device, **options)
    if kind == "onnx":
        from ovdet.methods.vild.onnx_detector import OnnxDetector

        return OnnxDetector(name_or_path, device=device)
    if kind == "regionspot":
        from ovdet.methods.regionspot.recognizer import RegionSpotRecognizer

        return RegionSpotRecognizer(name_or_path, device=device, **options)
    if kind == "ovsam":
        from ovdet.methods.ovsam.clip2sam import OVSam

        return OVSam(checkpoint_folder(name_or_path), device=device, **options)
    if kind == "sam2clip":
        from ovdet.methods.ovsam.sam2clip import load_sam2clip

        return load_sam2clip(checkpoint_folder(name_or_path), device=device)[0]
    if kind == "sam":
        from ovdet.models.sam import SamBackend

        return SamBackend.from_pretrained(str(name_or_path), device=device)
    from ovdet.models.loader import load_model

    return load_model(str(name_or_path), device=device)
