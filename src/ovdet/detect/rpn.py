"""Class-agnostic region proposal network (Faster R-CNN's RPN) on one feature map or a pyramid.

On one map every anchor size sits at every location; on a pyramid (FPN) level l gets the l-th
size alone, and one head (shared convs) runs over every level. Training: anchors are matched to
ground truth (IoU >= 0.7 foreground, < 0.3 background, each
object's best anchors foreground too); 256 anchors per image are sampled (half positive at
most); the loss is binary cross-entropy on objectness plus smooth-L1 on the deltas of positives,
both divided by the number of sampled anchors. Inference: decode, clip, drop tiny boxes, keep the
top `pre_nms` by objectness (per level), NMS at 0.7 (per level on a pyramid, as detectron2's
`find_top_rpn_proposals`), keep the top `post_nms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ovdet.detect.anchors import grid_anchors
from ovdet.detect.box_coder import BoxCoder
from ovdet.detect.matcher import match, sample
from ovdet.ops.boxes import clip_boxes
from ovdet.ops.levels import Features, as_levels
from ovdet.ops.nms import batched_nms, nms

FPN_SIZES = (32.0, 64.0, 128.0, 256.0, 512.0)  # one anchor side per level, P2..P6


@dataclass
class RPNConfig:
    sizes: tuple[float, ...] = (16.0, 32.0, 64.0)  # anchor sides in pixels (one per pyramid level)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # anchor height / width
    pre_nms: int = 1000
    post_nms: int = 300
    nms_iou: float = 0.7
    min_size: float = 2.0  # pixels
    fg_iou: float = 0.7
    bg_iou: float = 0.3
    batch_per_image: int = 256
    positive_fraction: float = 0.5


class RPN(nn.Module):
    """Objectness and box deltas for A anchors at every location of a (B, C, H, W) map, or of
    every map of a pyramid (`stride` a list, one anchor size per level)."""

    def __init__(
        self, in_channels: int, stride: int | Sequence[int], config: RPNConfig | None = None
    ) -> None:
        super().__init__()
        self.config = config or RPNConfig()
        self.strides = [stride] if isinstance(stride, int) else list(stride)
        sizes = tuple(self.config.sizes)
        if len(self.strides) == 1:
            self.level_sizes = [sizes]
        elif len(sizes) == len(self.strides):
            self.level_sizes = [(s,) for s in sizes]
        else:
            raise ValueError(
                f"a {len(self.strides)}-level pyramid needs one anchor size per level, got {sizes}"
            )
        self.num_anchors = len(self.level_sizes[0]) * len(self.config.ratios)
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, self.num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, 4 * self.num_anchors, 1)
        self.coder = BoxCoder()
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def anchors(
        self, feature_size: tuple[int, int], device: torch.device, level: int = 0
    ) -> torch.Tensor:
        """(H * W * A, 4) anchors of level `level`'s feature map."""
        return grid_anchors(
            feature_size, self.strides[level], self.level_sizes[level], self.config.ratios
        ).to(device)

    def head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> objectness logits (B, HWA) and deltas (B, HWA, 4), in (y, x, a) order."""
        x = F.relu(self.conv(features))
        b = x.shape[0]
        logits = self.objectness(x).permute(0, 2, 3, 1).reshape(b, -1)
        deltas = self.deltas(x).reshape(b, self.num_anchors, 4, *x.shape[-2:])
        return logits, deltas.permute(0, 3, 4, 1, 2).reshape(b, -1, 4)

    def forward(
        self,
        features: Features,
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[torch.Tensor] | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposals (list of (P, 4) xyxy), their objectness (list of (P,) in [0, 1]) and, given
        `targets` (list of (G, 4) xyxy ground truth), the losses; `generators` (one per image)
        draw each image's anchor sample (default: torch's global generator)."""
        levels = as_levels(features)
        if len(levels) != len(self.strides):
            raise ValueError(f"the RPN has {len(self.strides)} levels, got {len(levels)} maps")
        heads = [self.head(f) for f in levels]
        heads = [(a.float(), b.float()) for a, b in heads]  # losses and decoding in float32
        anchors = [self.anchors(tuple(f.shape[-2:]), f.device, k) for k, f in enumerate(levels)]
        logits = torch.cat([h[0] for h in heads], 1)
        deltas = torch.cat([h[1] for h in heads], 1)
        all_anchors = torch.cat(anchors)
        losses = (
            self.losses(logits, deltas, all_anchors, targets, generators)
            if targets is not None
            else {}
        )
        counts = [len(a) for a in anchors]
        boxes, scores = [], []
        with torch.no_grad():
            for i, size in enumerate(image_sizes):
                b, s = self.propose(
                    logits[i].detach(), deltas[i].detach(), all_anchors, size, counts
                )
                boxes.append(b)
                scores.append(s)
        return boxes, scores, losses

    def propose(
        self,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        anchors: torch.Tensor,
        size: tuple[int, int],
        counts: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's proposals from its (A,) logits and (A, 4) deltas over all levels' anchors
        (`counts`: anchors per level, in order; None: one level)."""
        c = self.config
        counts = list(counts) if counts is not None else [len(logits)]
        top, level, start = [], [], 0
        for k, n in enumerate(counts):  # the best `pre_nms` of each level
            best = logits[start : start + n].topk(min(c.pre_nms, n)).indices + start
            top.append(best)
            level.append(torch.full_like(best, k))
            start += n
        top, level = torch.cat(top), torch.cat(level)
        boxes = clip_boxes(self.coder.decode(deltas[top], anchors[top]), size)
        scores = logits[top].sigmoid()
        wh = boxes[:, 2:] - boxes[:, :2]
        keep = (wh >= c.min_size).all(1) & torch.isfinite(boxes).all(1)
        boxes, scores, level = boxes[keep], scores[keep], level[keep]
        if len(counts) == 1:
            keep = nms(boxes, scores, c.nms_iou, max_keep=c.post_nms)
        else:
            keep = batched_nms(boxes, scores, level, c.nms_iou)[: c.post_nms]
        return boxes[keep], scores[keep]

    def losses(
        self,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        anchors: torch.Tensor,
        targets: Sequence[torch.Tensor],
        generators: Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        c = self.config
        obj_losses, box_losses, count = [], [], 0
        for i, gt in enumerate(targets):
            matches = match(anchors, gt.to(anchors), c.fg_iou, c.bg_iou, allow_low_quality=True)
            g = generators[i] if generators is not None else None
            pos, neg = sample(matches, c.batch_per_image, c.positive_fraction, g)
            idx = torch.cat([pos, neg])
            labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(logits)
            obj_losses.append(
                F.binary_cross_entropy_with_logits(logits[i, idx], labels, reduction="sum")
            )
            if len(pos):
                target = self.coder.encode(gt.to(anchors)[matches[pos]], anchors[pos])
                box_losses.append(
                    F.smooth_l1_loss(deltas[i, pos], target, beta=1 / 9, reduction="sum")
                )
            count += len(idx)
        count = max(count, 1)
        zero = logits.sum() * 0
        return {
            "rpn_objectness": sum(obj_losses, zero) / count,
            "rpn_box": sum(box_losses, zero) / count,
        }
