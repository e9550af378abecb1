"""Region embeddings from one dense CLIP pass per image, pooled with RoIAlign (ViLD's fast path).

The whole image is letterboxed to a square (padding at the bottom and right with the mean colour,
so padded pixels are zero after normalisation), resized to the input side, and embedded once with
`encode_dense`. Each box averages the per-location embeddings it covers (RoIAlign, 1x1 output with
adaptive sampling), and the mean is L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import check_boxes
from ovdet.ops.letterbox import Letterbox
from ovdet.ops.roi_align import roi_align


class DenseEmbedder:
    """Region embeddings from `ClipModel.encode_dense`.

    Args:
        clip: the CLIP model.
        input_size: side of the square input, a positive multiple of the patch size; default the
            model's `dense_size` (CLIP: its own resolution; larger sides interpolate position
            embeddings: finer maps, more compute).
    """

    def __init__(self, clip: VisionLanguageModel, input_size: int | None = None):
        from ovdet.errors import ConfigError

        size = clip.dense_size if input_size is None else input_size
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or size <= 0
            or size % clip.patch_size
        ):
            raise ConfigError(
                f"dense size must be a positive multiple of {clip.patch_size} (the patch size), "
                f"got {size!r}"
            )
        self.clip, self.input_size = clip, size

    def letterbox(self, image: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(3, H, W) image -> (1, 3, S, S) pixel values and the scale from image to input pixels."""
        box = Letterbox.fit(*image.shape[-2:], self.input_size)
        return box.image(image, "bicubic", self.clip.normalize, self.clip.device), box.scale

    @torch.inference_mode()
    def dense_map(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(3, H, W) image -> (1, D, h, w) dense and (1, D) global embeddings, image scale."""
        pixels, scale = self.letterbox(image)
        dense, global_ = self.clip.encode_dense(pixels, with_global=True)
        return dense, global_, scale

    @torch.inference_mode()
    def embed(self, image: torch.Tensor, xyxy: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 image, (N, 4) xyxy boxes -> (N, D) L2-normalised region embeddings."""
        boxes = check_boxes(xyxy).to(self.clip.device)
        dense, _, scale = self.dense_map(image)
        pooled = roi_align(
            dense, [boxes], (1, 1), spatial_scale=scale / self.clip.patch_size, aligned=True
        )
        return F.normalize(pooled.flatten(1), dim=-1)
