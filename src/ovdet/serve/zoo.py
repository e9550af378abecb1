"""The models one server holds, loaded once at start-up, and the operations the API runs on them.

Every operation runs in an inference thread (see `jobs`); each model has a lock, so requests for
different models can run side by side and requests for one model take turns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ovdet.errors import ConfigError
from ovdet.recognize.points import point_boxes, segment_points
from ovdet.serve.limits import RequestError
from ovdet.types import Regions, Vocabulary

CLIP_NAME = "clip"  # the served CLIP, by this name in the API (recognize, classify, segment)
DETECTORS = ("vild", "regionspot")
SERVABLE = (*DETECTORS, "ovsam")  # what --model takes (Open-Vocabulary SAM cannot detect)


@dataclass
class ServedModel:
    """One model behind the API: its API name, kind, the loaded object and its lock."""

    name: str
    kind: str  # "vild", "regionspot", "ovsam" or "clip"
    runner: Any  # ViLDDetector, RegionSpotRecognizer, OVSam or ClipRecognizer
    source: str  # what it was loaded from (bundled name or folder)
    base_names: tuple[str, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # recent times per operation

    def took(self, operation: str, seconds: float, keep: int = 50) -> None:
        """Record one answered request's time (the last `keep` per operation are kept)."""
        times = self.seconds.setdefault(operation, [])
        times.append(seconds)
        del times[:-keep]

    @property
    def text(self) -> Any:
        """Its `TextEmbedder` (its own CLIP and templates, through the persistent cache)."""
        return self.runner.text

    def describe(self) -> dict[str, Any]:
        ops = ["recognize", "segment", "requery"] + (["detect"] if self.kind in DETECTORS else [])
        if self.kind == CLIP_NAME:
            ops.append("classify")
        return {
            "name": self.name,
            "kind": self.kind,
            "source": Path(self.source).name,
            "operations": sorted(ops),
            "base_names": list(self.base_names),
            # what each operation has cost here (mean of its recent requests): a client sizes
            # its timeout by it, and a server's --timeout below it answers 504
            "seconds": {op: round(sum(t) / len(t), 3) for op, t in self.seconds.items() if t},
        }


class Zoo:
    """The served models by API name, plus the CLIP (classify, box recognition) and the SAM that
    segments for models without their own (RegionSpot brings its own)."""

    def __init__(self, models: list[ServedModel], sam: Any, everything: Any = None) -> None:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"two served models share a name: {names}")
        self.models = {m.name: m for m in models}
        self.sam, self.sam_lock, self.everything = sam, threading.Lock(), everything

    @classmethod
    def load(
        cls,
        models: list[str],
        clip: str = "shapes-clip",
        sam: str | None = None,
        device: str = "cpu",
        text_cache: Any = "default",
        points_per_side: int = 32,
    ) -> Zoo:
        """Load every model once: detectors/recognizers by bundled name or folder, the CLIP and
        the SAM by alias, hub id or folder (one-line `OvdetError` when one is missing). A CLIP
        or SAM that a served RegionSpot already holds (the same checkpoint) is shared, not
        loaded twice. Without `sam`: a served RegionSpot's SAM, else shapes-sam beside a shapes
        CLIP, else none (segment then needs RegionSpot or Open-Vocabulary SAM)."""
        from ovdet.api import checkpoint_kind, load
        from ovdet.models.loader import load_model
        from ovdet.models.sam import SamBackend
        from ovdet.models.sam_everything import EverythingConfig
        from ovdet.recognize.clip_recognizer import ClipRecognizer

        served = []
        for source in models:
            kind = checkpoint_kind(source)
            if kind not in SERVABLE:
                raise ConfigError(
                    f"--model {source} is a {kind} model; serve takes ViLD, RegionSpot or "
                    "Open-Vocabulary SAM"
                )
            runner = load(source, device=device, text_cache=text_cache)
            served.append(
                ServedModel(_api_name(source), kind, runner, source, tuple(runner.base_names))
            )
        spots = [m.runner for m in served if m.kind == "regionspot"]
        if sam is None:
            sam = spots[0].sam_name if spots else ("shapes-sam" if "shapes" in clip else None)
        vlm = _held(spots, "clip", clip) or load_model(clip, device=device)
        served.append(
            ServedModel(CLIP_NAME, "clip", ClipRecognizer(vlm, "crop", text_cache=text_cache), clip)
        )
        backend = None
        if sam is not None:
            backend = _held(spots, "sam", sam) or SamBackend.from_pretrained(sam, device=device)
        return cls(served, backend, EverythingConfig(points_per_side=points_per_side))

    def get(self, name: str | None, operation: str) -> ServedModel:
        """The model `name` (default: the first that can do `operation`); 400 if unknown."""
        able = [m for m in self.models.values() if operation in m.describe()["operations"]]
        if not name:
            return able[0]
        if name not in self.models:
            raise RequestError(400, f"unknown model {name!r}; served: {', '.join(self.models)}")
        model = self.models[name]
        if model not in able:
            raise RequestError(
                400,
                f"model {name!r} ({model.kind}) cannot {operation}; "
                f"use {', '.join(m.name for m in able)}",
            )
        return model

    def detect(self, model: ServedModel, image: torch.Tensor, vocab: Vocabulary) -> Regions:
        """Open-vocabulary detection: ViLD's RPN, or RegionSpot on SAM's everything mode."""
        with model.lock:
            if model.kind == "vild":
                return model.runner.detect(image, vocab)
            text = model.runner.text_embeddings(vocab)
            return model.runner.detect(image, text, everything=self.everything)

    def recognize(
        self, model: ServedModel, image: torch.Tensor, xyxy: torch.Tensor, vocab: Vocabulary
    ) -> Regions:
        """Name given (N, 4) boxes: labels, scores, embeddings, class_scores (masks with
        RegionSpot)."""
        with model.lock:
            return model.runner.recognize_regions(image, Regions(xyxy, _size(image)), vocab)

    def classify(self, image: torch.Tensor, vocab: Vocabulary) -> torch.Tensor:
        """Zero-shot classification of the whole image by the served CLIP -> (C,) probabilities."""
        from ovdet.recognize.core import classify_images

        model = self.models[CLIP_NAME]
        with model.lock:
            return classify_images(model.runner.clip, [image], model.text.embed(vocab))[0]

    def segment(
        self,
        model: ServedModel,
        image: torch.Tensor,
        vocab: Vocabulary,
        xyxy: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
    ) -> Regions:
        """Masks from box or point prompts, each named. RegionSpot uses its own SAM and
        Open-Vocabulary SAM its own decoder on its CLIP's features; other models name the regions
        that the served SAM segments. A point's mask is the best of SAM's three (by predicted
        IoU); its box is the mask's, and the region is named from that box."""

        if model.kind == "ovsam":
            with model.lock:
                if points is not None:
                    return model.runner.segment_points(image, points, vocab)
                return model.runner.recognize_regions(image, Regions(xyxy, _size(image)), vocab)

        sam = model.runner.sam if model.kind == "regionspot" else self.sam
        if sam is None:
            raise RequestError(
                400,
                f"model {model.name!r} segments with the server's SAM, and none is served: "
                "start ovdet serve with --sam (e.g. sam-b), or use a RegionSpot or "
                "Open-Vocabulary SAM model",
            )
        with model.lock, self.sam_lock:
            if points is not None and model.kind != "regionspot":
                return segment_points(sam, model.runner, image, points, vocab)
            state = sam.set_image(image)
            if points is not None:
                masks = sam.point_masks(state, points)
                xyxy = point_boxes(masks, points, _size(image))
            else:
                masks = sam.predict_boxes(state, xyxy).masks
            if model.kind == "regionspot":
                text = model.runner.text_embeddings(vocab)
                regions = model.runner.recognize(image, xyxy, text, state)
            else:
                regions = model.runner.recognize_regions(image, Regions(xyxy, _size(image)), vocab)
        return regions.replace(masks=masks.cpu())

    def requery(
        self, model: ServedModel, embeddings: torch.Tensor, queries: list[str]
    ) -> torch.Tensor:
        """(N, D) region embeddings a response kept, T free-text queries -> (N, T) scores by the
        model's own rule: ViLD's over the queries (`ViLD.class_probabilities`, no background),
        RegionSpot's sigmoid of its calibrated logit, CLIP's softmax (cos x its logit scale;
        Open-Vocabulary SAM's kept embeddings are its frozen CLIP's, pooled in the region, and
        free-text queries are novel names, which its ensemble leaves almost wholly to CLIP)."""
        from ovdet.recognize.core import class_probabilities

        with model.lock:
            text = model.text.embed(Vocabulary(tuple(queries)))
            if model.kind in ("vild", "regionspot"):  # kept embeddings come back from the CPU
                device = next(model.runner.model.parameters()).device
                embeddings, text = embeddings.to(device), text.to(device)
            else:
                text = text.to(embeddings.device)
            if model.kind == "vild":
                return model.runner.model.class_probabilities(embeddings, text, background=False)
            if model.kind == "regionspot":
                return model.runner.model.logits(embeddings, text).sigmoid()
            return class_probabilities(embeddings, text, model.runner.clip.logit_scale)


def _api_name(source: str) -> str:
    """A served model's name in the API: a bundled name as is, a folder by its last part (no
    server path is shown to clients)."""
    return Path(source.rstrip("/")).name or source


def _held(spots: list, part: str, name: str) -> Any:
    """The `part` ("sam" or "clip") of a served RegionSpot loaded from the checkpoint `name`
    (compared by resolved path or name), or None."""
    from ovdet.models.registry import stored_name

    for spot in spots:
        if stored_name(getattr(spot, f"{part}_name")) == stored_name(name):
            return getattr(spot, part)
    return None


def _size(image: torch.Tensor) -> tuple[int, int]:
    return int(image.shape[-2]), int(image.shape[-1])
