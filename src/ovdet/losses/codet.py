"""CoDet's region-word loss (Ma et al., NeurIPS 2023; METHODS.md section 4) and the image-caption
loss it keeps from Detic.

- Region-word: each pseudo-region f_p of concept c is classified against the concept vocabulary
  with sigmoid BCE, `sum_c' BCE(scale * cos(f_p, t_c') + bias, [c' = c])`, averaged over
  pseudo-regions (scale 50 as the official code; bias -4.6 = log(0.01 / 0.99), Detic's prior,
  so that the absent concepts start near a probability of 0.01 instead of 0.5).
- Image-caption: the whole-image box's embedding picks its own caption among the batch's
  captions (softmax cross-entropy over `scale * cos`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SCALE = 50.0
PRIOR_BIAS = math.log(0.01 / 0.99)


def region_word_loss(
    regions: torch.Tensor,
    text: torch.Tensor,
    concepts: torch.Tensor,
    scale: float = SCALE,
    bias: float = PRIOR_BIAS,
) -> torch.Tensor:
    """(G, D) pseudo-regions, (C, D) concept text embeddings, (G,) concept indices -> scalar."""
    if regions.dim() != 2 or regions.shape[0] != concepts.shape[0]:
        raise ValueError(
            f"need (G, D) regions and (G,) concepts, got {tuple(regions.shape)} and "
            f"{tuple(concepts.shape)}"
        )
    logits = scale * F.normalize(regions, dim=-1) @ F.normalize(text.to(regions), dim=-1).t()
    target = F.one_hot(concepts, text.shape[0]).to(logits)
    bce = F.binary_cross_entropy_with_logits(logits + bias, target, reduction="sum")
    return bce / max(1, regions.shape[0])


def image_caption_loss(
    images: torch.Tensor, captions: torch.Tensor, scale: float = SCALE
) -> torch.Tensor:
    """(B, D) whole-image embeddings, (B, D) their captions' text embeddings -> scalar."""
    logits = scale * F.normalize(images, dim=-1) @ F.normalize(captions.to(images), dim=-1).t()
    return F.cross_entropy(logits, torch.arange(len(images), device=images.device))
