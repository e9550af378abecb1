"""ViLD's inference as one traceable graph, its vocabulary folded in (what `ovdet export` writes).

`DetectorGraph` computes what `ViLD.detect` does for one letterboxed image, written without Python
branches on data: the RPN's tiny boxes are masked instead of dropped, NMS and RoIAlign are
`ops.exportable`'s graph nodes, and the (C, D) text embeddings are a buffer (a constant of the
exported graph). Run eagerly it equals `ViLD.detect`; traced it exports to ONNX.

Outputs, for an input of the checkpoint's side:
- `nms=False` (NMS left to the caller): (P, 4) boxes (one per proposal, class-agnostic
  regression) and (P, C) scores p^(1 - a) * objectness^a;
- `nms=True`: (K, 4) boxes, (K,) scores and (K,) int64 labels after ViLD's own selection (score
  floor, the best `candidates` pairs, per-class NMS, `max_detections`), best first.
Boxes are in the letterboxed input's pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from ovdet.methods.vild.model import ViLD
from ovdet.ops.exportable import graph_nms
from ovdet.ops.levels import as_levels
from ovdet.ops.nms import separated


def clip_to(boxes: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Clamp (N, 4) xyxy boxes into an image whose (2,) float `size` is (H, W), as a graph."""
    upper = size.flip(0).repeat(2)  # (W, H, W, H)
    return torch.minimum(boxes.clamp(min=0), upper)


class DetectorGraph(nn.Module):
    """A trained ViLD with a fixed vocabulary: ((1, 3, S, S) normalised pixels, (2,) float (H, W)
    of the letterboxed image inside them) -> detections (see the module docstring).

    Args:
        model: the detector (eval mode).
        text: (C, D) the vocabulary's text embeddings.
        novel: (C,) bool, the names the ensemble trusts its image head for (None: none).
        nms: include ViLD's per-class NMS and selection.
    """

    def __init__(
        self, model: ViLD, text: torch.Tensor, novel: torch.Tensor | None = None, nms: bool = False
    ) -> None:
        super().__init__()
        self.model, self.nms = model, nms
        self.register_buffer("text", text.float().clone())
        novel = torch.zeros(len(text), dtype=torch.bool) if novel is None else novel
        self.register_buffer("novel", novel.bool().clone())

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m, c = self.model, self.model.config
        features = m.backbone(pixels)
        proposals, objectness = self.propose(as_levels(features), size)
        probs, _, deltas = m.score_regions(features, [proposals], self.text, self.novel)
        boxes = clip_to(m.coder.decode(deltas, proposals), size)
        a = c.objectness_weight
        scores = probs ** (1 - a) * objectness[:, None] ** a  # (P, C)
        if not self.nms:
            return boxes, scores
        return self.select(boxes, scores)

    def propose(
        self, levels: list[torch.Tensor], size: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`RPN.propose` for image 0: (P, 4) proposals and their (P,) objectness."""
        rpn = self.model.rpn
        c = rpn.config
        top_boxes, top_scores, top_levels = [], [], []
        for k, f in enumerate(levels):
            logits, deltas = (x[0].float() for x in rpn.head(f))
            anchors = rpn.anchors(tuple(f.shape[-2:]), f.device, k)
            best = logits.topk(min(c.pre_nms, logits.shape[0])).indices
            top_boxes.append(clip_to(rpn.coder.decode(deltas[best], anchors[best]), size))
            top_scores.append(logits[best].sigmoid())
            top_levels.append(torch.full_like(best, k))
        boxes, scores = torch.cat(top_boxes), torch.cat(top_scores)
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = (wh >= c.min_size).all(1) & torch.isfinite(boxes).all(1)
        masked = torch.where(valid, scores, torch.full_like(scores, -1.0))  # tiny: never kept
        if len(levels) > 1:  # NMS within each level
            boxes_for_nms = separated(boxes, torch.cat(top_levels), valid)
        else:
            boxes_for_nms = boxes
        keep = graph_nms(boxes_for_nms, masked, c.nms_iou, max_keep=c.post_nms, floor=-0.5)
        return boxes[keep], scores[keep]

    def select(
        self, boxes: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`model.select_detections` as a graph: (P, 4) boxes and (P, C) scores -> (K, 4) boxes,
        (K,) scores, (K,) labels, best first."""
        c = self.model.config
        classes = scores.shape[1]
        flat = scores.flatten()
        passing = flat > c.min_score
        masked = torch.where(passing, flat, torch.full_like(flat, -1.0))
        # padded to at least `candidates` entries, so top-k needs no branch on the count
        padded = torch.cat([masked, masked.new_full((c.candidates,), -1.0)])
        s, pairs = padded.topk(c.candidates)
        real = s > c.min_score
        pairs = torch.where(real, pairs, torch.zeros_like(pairs))  # padding -> any real row
        rows, cls = pairs // classes, pairs % classes
        candidates = boxes[rows]
        keep = graph_nms(
            separated(candidates, cls, real),
            s,
            c.nms_iou,
            max_keep=c.max_detections,
            floor=c.min_score,
        )
        return candidates[keep], s[keep], cls[keep]
