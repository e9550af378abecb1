"""Letterboxing: fit an image into a square input without distorting it, and map boxes both ways.

The image is scaled so that its long side becomes `side` (sizes rounded half up, as SAM's and
transformers' longest-side resize do), resized with antialiasing, and padded at the bottom and
right. Boxes map to the input by the same scale, and back by its inverse. One geometry serves
every model (ViLD's detector input, CLIP's dense map, SAM's encoder input); what differs is the
interpolation and whether pixels are normalised before padding (then pads are the mean colour).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ovdet.errors import ImageError

MAX_ASPECT = 20.0  # long side / short side past which an image is refused (see `check_aspect`)


def check_aspect(h: int, w: int, limit: float = MAX_ASPECT) -> None:
    """Refuse an (H, W) image whose sides differ by more than `limit` times, in one line."""
    if max(h, w) > limit * max(1, min(h, w)):
        raise ImageError(
            f"image is {w}x{h} (aspect ratio {max(h, w) / max(1, min(h, w)):.0f}:1); ovdet "
            f"takes images up to {limit:.0f}:1: crop or tile the image first"
        )


@dataclass(frozen=True)
class Letterbox:
    """How an (H, W) image sits in a (side, side) input: scaled by `scale` to `resized` (h, w),
    the rest padding."""

    side: int
    scale: float
    resized: tuple[int, int]
    original: tuple[int, int]

    @classmethod
    def fit(cls, h: int, w: int, side: int, short: int = 0) -> Letterbox:
        """The letterbox of an (h, w) image in a side x side input (refuses extreme aspects):
        the long side scaled to `side`, or with `short` the short side to `short` unless that
        takes the long side past `side` (detectron2's ResizeShortestEdge, e.g. 800 / 1333)."""
        check_aspect(h, w)
        scale = side / max(h, w)
        if short:
            scale = min(scale, short / min(h, w))
        resized = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
        return cls(side, scale, resized, (int(h), int(w)))

    def image(
        self,
        image: torch.Tensor,
        mode: str = "bilinear",
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """(3, H, W) image in [0, 255] -> (1, 3, side, side) float input.

        Resized with antialiasing (`mode` "bilinear" or "bicubic", clamped to [0, 255]), then
        `normalize`d if given, then padded with zeros: black pixels without `normalize`, the
        normalisation's mean colour with it.
        """
        if tuple(image.shape[-2:]) != self.original:
            raise ValueError(f"image is {tuple(image.shape[-2:])}, letterbox fits {self.original}")
        x = image.to(device or image.device, torch.float32)[None]
        if self.resized != self.original:
            x = F.interpolate(x, size=self.resized, mode=mode, antialias=True, align_corners=False)
            x = x.clamp(0, 255)
        if normalize is not None:
            x = normalize(x)
        nh, nw = self.resized
        return F.pad(x, (0, self.side - nw, 0, self.side - nh))

    def boxes(self, xyxy: torch.Tensor) -> torch.Tensor:
        """(N, 4) image-pixel boxes -> input-pixel boxes."""
        return xyxy * self.scale

    def invert_boxes(self, xyxy: torch.Tensor) -> torch.Tensor:
        """(N, 4) input-pixel boxes -> image-pixel boxes, clipped to the image."""
        h, w = self.original
        out = (xyxy / self.scale).clamp(min=0)
        return torch.minimum(out, torch.tensor([w, h, w, h], dtype=out.dtype, device=out.device))

    def invert_map(self, maps: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """(N, C, s, s) maps over the whole input (any resolution s) -> (N, C, H, W) over the
        image: upsampled to the input side, the padding cut off, the rest resized to the image
        (the order of SAM's own post-processing)."""
        x = F.interpolate(maps, size=(self.side, self.side), mode=mode, align_corners=False)
        x = x[..., : self.resized[0], : self.resized[1]]
        return F.interpolate(x, size=self.original, mode=mode, align_corners=False)
