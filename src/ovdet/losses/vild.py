"""ViLD's two objectives (Gu et al., ICLR 2022; METHODS.md section 2) and the focal loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vild_text_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_text = 1/N sum_r CE(softmax(z(r) / tau), y_r).

    Args:
        logits: (N, 1 + C) z(r) / tau, background first (see `TextClassifier`).
        labels: (N,) int64 in [0, C]: 0 for background, c + 1 for base class c.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0
    return F.cross_entropy(logits, labels)


def sigmoid_text_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class binary cross-entropy (Detic's and the official RKD code's classification):
    1/N sum_r sum_c BCE(z_c(r), [y_r = c + 1]); a background region (y_r = 0) is a negative for
    every class.

    Args:
        logits: (N, C) z(r) / tau, no background column.
        labels: (N,) int64 in [0, C]: 0 for background, c + 1 for base class c.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0
    target = F.one_hot(labels, logits.shape[1] + 1)[:, 1:].to(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    return bce / logits.shape[0]


def vild_image_loss(region_embeddings: torch.Tensor, clip_embeddings: torch.Tensor) -> torch.Tensor:
    """L_image = 1/M sum_r || V(crop(I, r)) - R(phi(I), r) ||_1, both L2-normalised.

    Args:
        region_embeddings: (M, D) the detector's embeddings of the M cached proposals.
        clip_embeddings: (M, D) CLIP's 1x + 1.5x crop embeddings of the same proposals.
    """
    if region_embeddings.shape[0] == 0:
        return region_embeddings.sum() * 0
    diff = F.normalize(region_embeddings, dim=-1) - F.normalize(
        clip_embeddings.to(region_embeddings), dim=-1
    )
    return diff.abs().sum(dim=-1).mean()


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) summed over classes, averaged over rows.

    Args:
        logits: (N, C) scores.
        targets: (N, C) in {0, 1}.
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum(dim=1).mean()
