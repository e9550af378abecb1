"""CLIP on cropped regions (R-CNN style; ViLD's eq. 1 crop ensemble).

Each box is cropped at 1x and 1.5x its size (clipped to the image), each crop is resized to CLIP's
square input without keeping the aspect ratio (as ViLD does), and the two normalised embeddings
are summed and normalised again. Crops are cut with `roi_align` on the whole image (bilinear,
antialiased by adaptive sampling when shrinking) in batches: one call, no per-box Python resize.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import check_boxes, clip_boxes, expand_boxes
from ovdet.ops.roi_align import roi_align


def crop_regions(image: torch.Tensor, xyxy: torch.Tensor, size: int) -> torch.Tensor:
    """Cut and resize boxes of one image.

    Args:
        image: (3, H, W) uint8 or float image in [0, 255].
        xyxy: (N, 4) boxes in image pixels.
        size: side S of the square output.

    Returns:
        (N, 3, S, S) float crops in [0, 255].
    """
    boxes = check_boxes(xyxy).to(image.device)
    x = image.float()[None]
    return roi_align(x, [boxes], (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


class CropEmbedder:
    """Region embeddings from CLIP on crops.

    Args:
        clip: the CLIP model.
        scales: crop sizes relative to the box (ViLD: 1x and 1.5x); embeddings are summed.
        batch_size: crops per image-tower forward.
    """

    def __init__(
        self, clip: VisionLanguageModel, scales: Sequence[float] = (1.0, 1.5), batch_size: int = 64
    ):
        if not scales:
            raise ValueError("scales must name at least one crop scale")
        self.clip, self.scales, self.batch_size = clip, tuple(scales), batch_size

    @torch.inference_mode()
    def embed(self, image: torch.Tensor, xyxy: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 image, (N, 4) xyxy boxes -> (N, D) L2-normalised region embeddings."""
        boxes = check_boxes(xyxy).to(self.clip.device)
        image = image.to(self.clip.device)
        size = tuple(image.shape[-2:])
        total = torch.zeros(len(boxes), self.clip.embed_dim, device=self.clip.device)
        for scale in self.scales:
            scaled = clip_boxes(expand_boxes(boxes, scale), size) if scale != 1 else boxes
            parts = [
                self.clip.encode_image(
                    self.clip.normalize(crop_regions(image, chunk, self.clip.image_size))
                )
                for chunk in scaled.split(self.batch_size)
            ]
            if parts:
                total += torch.cat(parts)
        return F.normalize(total, dim=-1)
