"""ViLD: an open-vocabulary two-stage detector distilled from CLIP (Gu et al., ICLR 2022).

A backbone, a class-agnostic RPN and RoI head(s) that output region embeddings in the text space
plus class-agnostic box deltas. Training sees base categories only:
- ViLD-text: logits z(r) = [sim(e_r, e_bg), sim(e_r, t_1..C_base)] / tau, cross-entropy (eq. 2);
  or, with `classification="sigmoid"` (Detic's and the official RKD code's form), per-class
  sigmoids of sim(e_r, t_c) / tau with no background, binary cross-entropy (a background region
  is a negative for every class instead of a match for a learned background embedding);
- ViLD-image: L1 between the embeddings of cached proposals and their CLIP crop embeddings (eq. 3);
- ViLD: L_text + w L_image on one head; ViLD-ensemble: one head per objective, combined at
  inference by a geometric mean weighted towards text for base and towards image for novel
  categories (lambda = 2/3).
At inference the vocabulary is any (C, D) text embedding matrix. A detection's score is the
geometric mean of its class probability and the RPN objectness (ViLD section 3.4: the best-named
box is not always the best-localised one; objectness corrects for that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ovdet.detect.box_coder import BoxCoder
from ovdet.detect.c4 import Res5RoIHead
from ovdet.detect.matcher import match, sample
from ovdet.detect.rpn import RPN, RPNConfig
from ovdet.heads.mask_head import MaskHead, mask_loss
from ovdet.heads.roi_head import RoIHead
from ovdet.heads.text_classifier import TextClassifier
from ovdet.heads.weight_transfer import WeightTransfer
from ovdet.losses.vild import sigmoid_text_loss, vild_image_loss, vild_text_loss
from ovdet.ops.boxes import clip_boxes
from ovdet.ops.levels import device_of
from ovdet.ops.nms import batched_nms
from ovdet.types import Regions


@dataclass
class ViLDConfig:
    embed_dim: int  # D of the text space
    image_weight: float = 0.5  # w in L_text + w L_image (0: ViLD-text)
    text_weight: float = 1.0  # 0: ViLD-image (no text loss, no background slot at inference)
    ensemble: bool = False  # separate text and image heads (ViLD-ensemble)
    temperature: float = 0.01  # tau
    roi_batch: int = 128  # sampled RoIs per image
    roi_positive_fraction: float = 0.25
    roi_fg_iou: float = 0.5
    ensemble_lambda: float = 2 / 3
    objectness_weight: float = 0.5  # score = p_class^(1 - a) * objectness^a
    nms_iou: float = 0.5
    max_detections: int = 100  # per image
    candidates: int = 5000  # (box, class) pairs kept for NMS, the best by score (per image)
    min_score: float = 1e-4
    hidden: int = 512
    weight_transfer: bool = False  # RKD's: classify with `heads.weight_transfer` (W_D frozen)
    classification: str = "softmax"  # or "sigmoid": per-class BCE, no background (Detic, RKD)
    mask: bool = False  # a class-agnostic mask head (Mask R-CNN's), trained on instance masks
    mask_channels: int = 256
    mask_weight: float = 1.0

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(self, choices={"classification": CLASSIFICATIONS})


CLASSIFICATIONS = ("softmax", "sigmoid")


def select_detections(
    boxes: torch.Tensor, probs: torch.Tensor, objectness: torch.Tensor, config: ViLDConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score every (box, class) pair as p^(1 - a) * objectness^a, then `select_scored`.

    Args:
        boxes: (n, 4) xyxy; probs: (n, C); objectness: (n,).

    Returns:
        (K,) box rows, (K,) classes and (K,) scores, best first.
    """
    a = config.objectness_weight
    return select_scored(boxes, probs ** (1 - a) * objectness[:, None] ** a, config)


def select_scored(
    boxes: torch.Tensor, scores: torch.Tensor, config: ViLDConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, 4) xyxy boxes and their (n, C) pair scores -> (K,) box rows, (K,) classes and (K,)
    scores, best first: pairs above `min_score`, the best `candidates` of them, per-class NMS,
    the best `max_detections`."""
    rows, cls = (scores > config.min_score).nonzero(as_tuple=True)
    s = scores[rows, cls]
    if len(s) > config.candidates:  # 1,000 boxes x 1,203 names: NMS on the best pairs only
        best = s.topk(config.candidates).indices.sort().values  # in their original order
        rows, cls, s = rows[best], cls[best], s[best]
    keep = batched_nms(boxes[rows], s, cls, config.nms_iou)[: config.max_detections]
    return rows[keep], cls[keep], s[keep]


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


class ViLD(nn.Module):
    """The detector. `backbone` maps (B, 3, H, W) pixels to (B, C, H/s, W/s) with attributes
    `out_channels` and `stride`; `base_text` is the (C_base, D) training vocabulary."""

    def __init__(
        self,
        backbone: nn.Module,
        base_text: torch.Tensor,
        config: ViLDConfig,
        rpn_config: RPNConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        rpn_strides = getattr(backbone, "strides", None) or backbone.stride
        roi_strides = getattr(backbone, "roi_strides", None) or rpn_strides
        self.rpn = RPN(backbone.out_channels, rpn_strides, rpn_config)

        def roi_head() -> nn.Module:  # C4: the backbone's res5 is the head; else two fc layers
            if hasattr(backbone, "res5"):
                res5, width = backbone.res5[0], backbone.res5_channels
                return Res5RoIHead(res5, width, config.embed_dim, backbone.stride)
            return RoIHead(
                backbone.out_channels, roi_strides, config.embed_dim, hidden=config.hidden
            )

        self.text_head = roi_head()
        self.image_head = roi_head() if config.ensemble else None
        self.classifier = TextClassifier(base_text, config.temperature, background=True)
        self.coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.transfer = WeightTransfer(self.text_head.embed) if config.weight_transfer else None
        self.mask_head = (
            MaskHead(backbone.out_channels, roi_strides, config.mask_channels)
            if config.mask
            else None
        )

    def class_outputs(
        self, features: torch.Tensor, boxes: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) classification embeddings and (N, 4) box deltas of every image's boxes: the
        text head's, or with weight transfer the transferred projection of its features."""
        if self.transfer is None:
            return self.text_head(features, boxes)
        x = self.text_head.hidden(features, boxes)
        return self.transfer(x), self.text_head.box(x)

    # ---- training ---------------------------------------------------------------------------

    def sample_rois(
        self,
        proposals: list[torch.Tensor],
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Per image: proposals + ground truth, matched at IoU 0.5, `roi_batch` sampled.

        Returns RoIs per image (foreground first), (N,) labels (0 background, c + 1 base class
        c), (N, 4) regression targets, an (N,) bool mask of foreground rows and, per image, the
        (n_fg,) indices of the ground truth its foreground RoIs matched.
        """
        c = self.config
        rois, labels, targets, fg, matched = [], [], [], [], []
        for i, (props, boxes, cls) in enumerate(zip(proposals, gt_boxes, gt_labels, strict=True)):
            cand = torch.cat([props, boxes.to(props)])
            m = match(cand, boxes.to(props), c.roi_fg_iou, c.roi_fg_iou)
            g = generators[i] if generators is not None else None
            pos, neg = sample(m, c.roi_batch, c.roi_positive_fraction, g)
            idx = torch.cat([pos, neg])
            rois.append(cand[idx])
            lab = torch.zeros(len(idx), dtype=torch.int64, device=props.device)
            lab[: len(pos)] = cls.to(props.device)[m[pos]] + 1
            labels.append(lab)
            tgt = torch.zeros(len(idx), 4, device=props.device)
            if len(pos):
                tgt[: len(pos)] = self.coder.encode(boxes.to(props)[m[pos]], cand[pos])
            targets.append(tgt)
            fg.append(torch.arange(len(idx), device=props.device) < len(pos))
            matched.append(m[pos])
        return rois, torch.cat(labels), torch.cat(targets), torch.cat(fg), matched

    def losses(
        self,
        pixels: torch.Tensor,
        image_sizes: Sequence[tuple[int, int]],
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        distill_boxes: Sequence[torch.Tensor] | None = None,
        distill_embeddings: Sequence[torch.Tensor] | None = None,
        gt_masks: Sequence[torch.Tensor] | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        """All training losses of a batch; `distill_*` are the cached proposals of each image and
        their (M, D) CLIP crop embeddings (needed when image_weight > 0 or ensemble); `gt_masks`
        each image's (G, H, W) bool masks in the input's pixels (for the mask head);
        `generators` (one per image) draw its anchor and RoI samples (default: torch's global
        generator). A frozen backbone or RPN (no parameter requiring grad) runs without a graph
        and adds no loss."""
        features, proposals, losses = self.propose(pixels, image_sizes, gt_boxes, generators)
        return losses | self.head_losses(
            features,
            proposals,
            gt_boxes,
            gt_labels,
            distill_boxes,
            distill_embeddings,
            gt_masks,
            generators,
        )

    def propose(
        self,
        pixels: torch.Tensor,
        image_sizes: Sequence[tuple[int, int]],
        gt_boxes: Sequence[torch.Tensor] | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """(B, 3, H, W) pixels -> (B, C, h, w) backbone features, each image's (P, 4)
        proposals and the RPN's losses (given `gt_boxes` and a trainable RPN; else none). A
        frozen backbone runs without a graph."""
        with torch.set_grad_enabled(_trainable(self.backbone) and torch.is_grad_enabled()):
            features = self.backbone(pixels)
        rpn_targets = gt_boxes if _trainable(self.rpn) else None
        proposals, _, losses = self.rpn(features, image_sizes, rpn_targets, generators)
        return features, proposals, losses

    def head_losses(
        self,
        features: torch.Tensor,
        proposals: list[torch.Tensor],
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        distill_boxes: Sequence[torch.Tensor] | None = None,
        distill_embeddings: Sequence[torch.Tensor] | None = None,
        gt_masks: Sequence[torch.Tensor] | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The RoI heads' losses given (B, C, h, w) backbone features and each image's (P, 4)
        proposals (what `losses` computes after the backbone and RPN)."""
        device = device_of(features)
        losses: dict[str, torch.Tensor] = {}
        rois, labels, targets, fg, matched = self.sample_rois(
            proposals, gt_boxes, gt_labels, generators
        )
        if self.mask_head is not None and (gt_masks is not None or _trainable(self.mask_head)):
            if gt_masks is None:  # a frozen mask head (fine-tuning without masks) is skipped
                raise ValueError("a detector with a trainable mask head trains on gt_masks")
            fg_boxes = [r[: len(m)] for r, m in zip(rois, matched, strict=True)]
            logits = self.mask_head(features, fg_boxes).float()
            losses["mask"] = self.config.mask_weight * mask_loss(
                logits, gt_masks, fg_boxes, matched
            )
        emb, deltas = (x.float() for x in self.class_outputs(features, rois))  # losses in fp32
        if self.config.text_weight > 0:
            losses["text"] = self.config.text_weight * self.classification_loss(emb, labels)
        losses["box"] = F.smooth_l1_loss(deltas[fg], targets[fg], beta=1.0, reduction="sum") / max(
            1, len(labels)
        )
        if distill_boxes is not None and (
            self.config.image_weight > 0 or self.image_head is not None
        ):
            head = self.image_head or self.text_head
            img_emb, _ = head(features, [b.to(device) for b in distill_boxes])
            clip_emb = torch.cat([e.to(device) for e in distill_embeddings])
            weight = 1.0 if self.image_head is not None else self.config.image_weight
            losses["image"] = weight * vild_image_loss(img_emb, clip_emb)
        return losses

    # ---- inference --------------------------------------------------------------------------

    def score_regions(
        self,
        features: torch.Tensor,
        boxes: list[torch.Tensor],
        text: torch.Tensor,
        novel: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, C) class probabilities (background removed), (N, D) region embeddings and (N, 4)
        box deltas of the boxes of every image."""

        def probabilities(embeddings: torch.Tensor) -> torch.Tensor:
            return self.class_probabilities(embeddings, text.to(embeddings))

        emb, deltas = self.class_outputs(features, boxes)
        p_text = probabilities(emb)
        if self.image_head is None:
            return p_text, F.normalize(emb, dim=-1), deltas
        img, _ = self.image_head(features, boxes)
        p_image = probabilities(img)
        lam = self.config.ensemble_lambda
        is_novel = (
            novel if novel is not None else torch.zeros(text.shape[0], dtype=torch.bool)
        ).to(p_text.device)
        w_text = torch.where(is_novel, 1 - lam, lam)  # (C,): base trusts text, novel trusts image
        p = p_text.clamp(min=1e-12) ** w_text * p_image.clamp(min=1e-12) ** (1 - w_text)
        return p, F.normalize(F.normalize(emb, dim=-1) + F.normalize(img, dim=-1), dim=-1), deltas

    def classification_loss(
        self, embeddings: torch.Tensor, labels: torch.Tensor, text: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, D) region embeddings, (N,) labels in [0, C] (0 background, c + 1 class c) -> the
        detector's classification loss over `text` ((C, D); default: the base vocabulary):
        cross-entropy over the learned background and the classes, or per-class BCE
        (`classification="sigmoid"`)."""
        if self.config.classification == "sigmoid":
            return sigmoid_text_loss(self.classifier(embeddings, text, background=False), labels)
        return vild_text_loss(self.classifier(embeddings, text, background=True), labels)

    def class_probabilities(
        self, embeddings: torch.Tensor, text: torch.Tensor, background: bool | None = None
    ) -> torch.Tensor:
        """(N, D) region embeddings, (C, D) class text embeddings -> (N, C) probabilities by the
        detector's rule: a softmax over a trained background and the classes (background column
        dropped), over the classes alone for ViLD-image (no background was trained) or when
        `background` is False, or per-class sigmoids (`classification="sigmoid"`)."""
        if self.config.classification == "sigmoid":
            return self.classifier(embeddings, text, background=False).sigmoid()
        if background is None:  # a trained background competes with the classes
            background = self.config.text_weight > 0
        logits = self.classifier(embeddings, text, background)
        return logits.softmax(-1)[:, int(background) :]

    @torch.no_grad()
    def detect(
        self,
        pixels: torch.Tensor,
        image_sizes: Sequence[tuple[int, int]],
        text: torch.Tensor,
        novel: torch.Tensor | None = None,
    ) -> list[Regions]:
        """Detect the classes of `text` ((C, D) embeddings; `novel` (C,) bool marks those the
        ensemble should trust the image head for). Boxes are in the input pixels' frame."""
        c = self.config
        features = self.backbone(pixels)
        proposals, objectness, _ = self.rpn(features, image_sizes)
        probs, emb, deltas = self.score_regions(features, proposals, text, novel)
        out, kept = [], []
        for i, (props, obj, size) in enumerate(
            zip(proposals, objectness, image_sizes, strict=True)
        ):
            start = sum(len(p) for p in proposals[:i])
            rows_of = slice(start, start + len(props))
            p, e = probs[rows_of], emb[rows_of]
            boxes = clip_boxes(self.coder.decode(deltas[rows_of], props), size)
            rows, cls, s = select_detections(boxes, p, obj, c)
            kept.append(boxes[rows])
            out.append(
                Regions(
                    boxes[rows].cpu(),
                    tuple(size),
                    scores=s.cpu(),
                    labels=cls.cpu(),
                    embeddings=e[rows].cpu(),
                    data={"class_scores": p[rows].cpu()},
                )
            )
        if self.mask_head is not None:  # (K, 28, 28) over each box, pasted by the caller
            grids = self.mask_head(features, kept).sigmoid().cpu()
            for regions, part in zip(out, grids.split([len(b) for b in kept]), strict=True):
                regions.data["mask_probs"] = part
        return out
