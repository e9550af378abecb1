"""What an index stores per image: class-agnostic region proposals and their embeddings in CLIP's
joint image-text space: by default one dense CLIP pass per image, RoIAlign per box
(`DenseEmbedder`); with a RegionSpot checkpoint, its fused SAM + CLIP embedding (unit vectors
in the space of that checkpoint's CLIP text embeddings, which its classifier compares them to).

Proposals come from SAM's everything mode (with RegionSpot: its own SAM, whose image embedding
then serves both the proposals and the tokens), or from a ViLD checkpoint's detections of its own
base names, merged across classes (class-agnostic NMS) and kept above a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.nms import nms
from ovdet.recognize.dense import DenseEmbedder


@dataclass
class ProposalConfig:
    """`source`: "sam" or a ViLD checkpoint (folder or bundled name); `sam`: the SAM for "sam";
    `points_per_side`, `sam_iou`, `sam_stability`: SAM's grid and mask thresholds (SAM's own
    defaults for the thresholds); `min_score`, `nms`, `max_regions`: what a detector keeps."""

    source: str = "sam"
    sam: str = "sam-b"
    points_per_side: int = 16
    sam_iou: float = 0.88
    sam_stability: float = 0.95
    min_score: float = 0.05
    nms: float = 0.7
    max_regions: int = 100


class RegionSource:
    """`regions(image) -> {"boxes" (N, 4), "scores" (N,), "embeddings" (N, D) float16}`."""

    def __init__(
        self,
        clip: VisionLanguageModel,
        config: ProposalConfig,
        device: str = "cpu",
        dense_size: int | None = None,
        regionspot: Any = None,
    ) -> None:
        self.config, self.embedder = config, DenseEmbedder(clip, dense_size)
        self.spot = regionspot  # a RegionSpotRecognizer, or None for dense CLIP embeddings
        self._propose = self._sam(device) if config.source == "sam" else self._detector(device)

    def _sam(self, device: str):
        from ovdet.models.sam import SamBackend
        from ovdet.models.sam_everything import EverythingConfig, everything

        if self.spot is not None:
            sam = self.spot.sam
        else:
            sam = SamBackend.from_pretrained(self.config.sam, device=device)
        c = self.config
        grid = EverythingConfig(
            points_per_side=c.points_per_side,
            iou_threshold=c.sam_iou,
            stability_threshold=c.sam_stability,
        )

        def propose(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
            state = sam.set_image(image)
            found = everything(sam, state, grid)
            return found.xyxy, found.scores, state

        return propose

    def _detector(self, device: str):
        from ovdet.api import checkpoint_kind, load
        from ovdet.errors import OvdetError
        from ovdet.vocab.parse import parse_vocabulary

        if checkpoint_kind(self.config.source) != "vild":
            raise OvdetError(
                f"--proposals takes 'sam' or a ViLD checkpoint, got {self.config.source!r}"
            )
        detector = load(self.config.source, device=device)
        vocab = parse_vocabulary(", ".join(detector.base_names))
        c = self.config

        def propose(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
            found = detector.detect(image, vocab)
            found = found[found.scores >= c.min_score]
            keep = nms(found.xyxy, found.scores, c.nms)[: c.max_regions]
            return found.xyxy[keep], found.scores[keep], None

        return propose

    def signature(self) -> dict[str, Any]:
        folder = None if self.spot is None else self.spot.folder
        return region_signature(self.config, self.embedder.input_size, folder)

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes, scores, state = self._propose(image)
        boxes = boxes.float().cpu()
        wide = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        boxes, scores = boxes[wide], scores.float().cpu()[wide]
        dim = self.embedder.clip.embed_dim
        if len(boxes) == 0:
            emb = torch.zeros(0, dim)
        elif self.spot is not None:
            emb = self.spot.embed(image, boxes, state)[0].float().cpu()
        else:
            emb = self.embedder.embed(image, boxes).float().cpu()
        return {"boxes": boxes, "scores": scores, "embeddings": emb.half()}


def region_signature(
    config: ProposalConfig, dense_size: int, regionspot: str | None = None
) -> dict[str, Any]:
    """What an index's regions depend on besides the CLIP: the proposals, the dense size, and
    the RegionSpot checkpoint whose embeddings replace the dense ones (None: dense)."""
    sam = config.source == "sam"
    return {
        "proposals": config.source,
        "sam": config.sam if sam else None,
        "sam_grid": [config.points_per_side, config.sam_iou, config.sam_stability] if sam else None,
        "dense_size": dense_size,
        "regionspot": regionspot,
    }


def make_source(
    clip_name: str,
    config: ProposalConfig,
    device: str = "cpu",
    dense_size: int | None = None,
    regionspot: str | None = None,
) -> RegionSource:
    """A `RegionSource` with its models loaded by name (what a Ray actor builds once)."""
    from ovdet.models.loader import load_model

    if regionspot is None:
        return RegionSource(load_model(clip_name, device=device), config, device, dense_size)
    from ovdet.api import load

    spot = load(regionspot, device=device)
    return RegionSource(spot.clip, config, device, dense_size, spot)
