"""RKD's pseudo-labelers: the multi-modal detector's two jobs (MAVL's in the paper).

- `proposals(image, key)`: class-agnostic boxes for region-based distillation (the paper: top 50
  per query, NMS 0.5; `top_proposals` keeps the best k after NMS, k = 5 in the official runs).
- `best_boxes(image, key, labels)`: for each image-level label c, the top-1 box for "every {c}"
  and its score (pseudo-box image-level supervision keeps those above a threshold).

Three labelers:
- `Owlv2Labeler`: OWLv2's objectness head for proposals, its text queries for "every {c}".
- `ClipScoredLabeler` over any class-agnostic proposal source: "every {c}" is the proposal whose
  CLIP region embedding gives c the highest probability over the whole vocabulary. Sources:
  `ProposalsFile` (a JSON list of {"image_id", "bbox": [x, y, w, h], "score"}) and
  `SamEverything` (SAM's automatic mode).
- The shapes world's stand-in is `ClipScoredLabeler(SamEverything(shapes-sam), shapes-clip)`: no
  multi-modal ViT can be trained here in minutes, so SAM's everything mode (class-agnostic,
  trained on every shape, as MAVL is) proposes and the tiny CLIP's dense RoI embeddings name.

All boxes are xyxy in the image's own pixels, best first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ovdet.errors import FormatError
from ovdet.io.coco import check_results, read_json
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.ops.nms import nms
from ovdet.recognize.core import class_probabilities

Proposer = Callable[[torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]


class PseudoLabeler(Protocol):
    name: str

    def proposals(self, image: torch.Tensor, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 4) class-agnostic boxes and (P,) scores of a (3, H, W) uint8 image."""
        ...

    def best_boxes(
        self, image: torch.Tensor, key: Any, labels: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, 4) the top-1 box of each label (a vocabulary index) and (L,) its score."""
        ...


def top_proposals(
    boxes: torch.Tensor, scores: torch.Tensor, k: int, iou: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """NMS at `iou`, then the best `k`; boxes with no area are dropped first."""
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & scores.isfinite()
    boxes, scores = boxes[ok], scores[ok]
    keep = nms(boxes, scores, iou, max_keep=k)
    return boxes[keep], scores[keep]


class ProposalsFile:
    """Class-agnostic proposals read from a COCO-results-style JSON list (`category_id`, if
    present, is ignored); `key` is the image id."""

    def __init__(self, path: str | os.PathLike) -> None:
        entries = check_results(read_json(path), str(path))
        self.path = str(path)
        self.by_image: dict[Any, list[list[float]]] = {}
        for e in entries:
            self.by_image.setdefault(e["image_id"], []).append([*e["bbox"], e.get("score", 1.0)])

    def __call__(self, image: torch.Tensor, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.tensor(self.by_image.get(key, []), dtype=torch.float32).reshape(-1, 5)
        order = rows[:, 4].argsort(descending=True, stable=True)
        return xywh_to_xyxy(rows[order, :4]), rows[order, 4]

    def check_covers(self, keys: Sequence[Any]) -> None:
        """Refuse a file that has proposals for none of `keys` (a wrong file, or wrong ids)."""
        if keys and not any(k in self.by_image for k in keys):
            raise FormatError(
                f"{self.path} has no proposals for any training image (its image ids: "
                f"{list(self.by_image)[:5]}, the dataset's: {list(keys)[:5]})"
            )


class SamEverything:
    """SAM's everything mode as a proposal source (boxes of its masks, scored by predicted IoU)."""

    def __init__(self, sam: Any, config: Any = None) -> None:
        self.sam, self.config = sam, config

    def __call__(self, image: torch.Tensor, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from ovdet.models.sam_everything import everything

        regions = everything(self.sam, self.sam.set_image(image), self.config)
        return regions.xyxy, regions.scores


class RPNProposals:
    """A trained ViLD checkpoint's RPN as a proposal source (boxes and objectness)."""

    def __init__(self, model: Any, spec: dict[str, Any]) -> None:
        self.model, self.side = model, spec["side"]

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from ovdet.data.coco import letterbox

        pixels, box = letterbox(image, self.side)
        boxes, objectness, _ = self.model.rpn(self.model.backbone(pixels), [box.resized])
        return box.invert_boxes(boxes[0]), objectness[0]


@dataclass
class ClipScoredLabeler:
    """Proposals from `source`; "every {c}" is the proposal CLIP finds most like c.

    Args:
        source: (image, key) -> (P, 4) boxes, (P,) scores.
        embedder: a region embedder (`DenseEmbedder` or `CropEmbedder`) of the CLIP.
        text: (C, D) normalised class embeddings of the whole vocabulary.
        logit_scale: the CLIP's inverse temperature.
    """

    source: Proposer
    embedder: Any
    text: torch.Tensor
    logit_scale: float
    name: str = "clip-scored"

    def proposals(self, image: torch.Tensor, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source(image, key)

    def best_boxes(
        self, image: torch.Tensor, key: Any, labels: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, _ = self.source(image, key)
        labels = list(labels)
        if len(boxes) == 0 or not labels:
            return torch.zeros(len(labels), 4), torch.zeros(len(labels))
        p = class_probabilities(
            self.embedder.embed(image, boxes).cpu(), self.text, self.logit_scale
        )
        best = p[:, labels].max(0)  # each label's best proposal
        return boxes[best.indices], best.values


class Owlv2Labeler:
    """OWLv2 as RKD's multi-modal ViT: objectness for proposals, "every {c}" text queries."""

    def __init__(self, owl: Any, names: Sequence[str], template: str = "every {}") -> None:
        self.owl, self.names, self.template = owl, list(names), template
        self.name = f"owlv2:{owl.name}"

    def proposals(self, image: torch.Tensor, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.owl.objectness(image)

    def best_boxes(
        self, image: torch.Tensor, key: Any, labels: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = list(labels)
        if not labels:
            return torch.zeros(0, 4), torch.zeros(0)
        boxes, probs = self.owl.query(image, [self.template.format(self.names[c]) for c in labels])
        best = probs.max(0)  # (L,) over patches
        return boxes[best.indices], best.values


STAND_IN = {"points_per_side": 8, "iou_threshold": 0.7, "stability_threshold": 0.9}  # measured:
# on det-val, 3.0 proposals per image holding 89% of the objects at IoU 0.5, 0.15 s per image
# (SAM's defaults, 32 x 32 points at 0.88 / 0.95: 1.6 proposals, 57%, 1.8 s)


def make_labeler(
    kind: str, vocab: Any, clip: Any, templates: str = "ensemble", sam: str = "shapes-sam"
) -> PseudoLabeler:
    """`kind`: "shapes" (SAM everything + CLIP, the shapes world's stand-in), "owlv2" or
    "owlv2:<hub id or folder>" (OWLv2), or a proposals JSON file (named by CLIP)."""
    from ovdet.recognize.dense import DenseEmbedder
    from ovdet.vocab.embed import embed_vocabulary

    if kind == "owlv2" or kind.startswith("owlv2:"):
        from ovdet.models.owlv2 import Owlv2

        owl = Owlv2.from_pretrained(kind.partition(":")[2] or "owlv2-base")
        return Owlv2Labeler(owl, vocab.names)
    if kind == "shapes":
        from ovdet.models.sam import SamBackend
        from ovdet.models.sam_everything import EverythingConfig

        source: Proposer = SamEverything(
            SamBackend.from_pretrained(sam), EverythingConfig(**STAND_IN)
        )
        name = f"sam-everything:{sam}+{clip.name}"
    else:
        source, name = ProposalsFile(kind), f"proposals:{kind}+{clip.name}"
    text = embed_vocabulary(clip, vocab, templates)
    return ClipScoredLabeler(source, DenseEmbedder(clip), text, clip.logit_scale, name)
