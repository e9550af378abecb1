"""Point prompts with any SAM and any recogniser: each point's mask (the best of SAM's three),
its box, and the name the recogniser gives that box. `ovdet recognize --points --sam` and the
server's /v1/segment share it."""

from __future__ import annotations

from typing import Any

import torch

from ovdet.types import Regions, Vocabulary


def point_boxes(masks: torch.Tensor, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) point masks' boxes (N, 4), with an empty mask's replaced by a 16-pixel box
    around its point, inside the (H, W) image."""
    from ovdet.ops.masks import point_region_boxes

    xyxy = point_region_boxes(masks, points, 8)
    h, w = size  # a mask's own box already lies inside: only the 16-pixel boxes move
    lo = torch.tensor([0, 0, 1, 1], dtype=xyxy.dtype, device=xyxy.device)
    hi = torch.tensor([w - 1, h - 1, w, h], dtype=xyxy.dtype, device=xyxy.device)
    return torch.max(torch.min(xyxy, hi), lo)


def segment_points(
    sam: Any, recognizer: Any, image: torch.Tensor, points: torch.Tensor, vocab: Vocabulary
) -> Regions:
    """(3, H, W) image and (N, 2) xy points -> N regions: SAM's mask of each point, named by
    `recognizer` (any `Recognizer`: CLIP crops, a ViLD's RoI heads) in the mask's box."""
    size = (int(image.shape[-2]), int(image.shape[-1]))
    masks = sam.point_masks(sam.set_image(image), points)
    boxes = Regions(point_boxes(masks, points, size), size)
    regions = recognizer.recognize_regions(image, boxes, vocab)
    return regions.replace(masks=masks.cpu())
