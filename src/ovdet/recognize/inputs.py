"""What the front door's methods accept, brought to the types they compute with.

`detect(image, vocab)` and `recognize_regions(image, regions, vocab)` take the image as a
(3, H, W) uint8 tensor, a file path, a PIL image or a numpy array (`io.images.load_image`), the
vocabulary as a `Vocabulary`, an inline string ("cat|kitty, traffic cone"), a vocabulary file or
a list of names (`vocab.parse.as_vocabulary`), and the regions as `Regions` or (N, 4) xyxy boxes
(a tensor, array or list).
"""

from __future__ import annotations

from typing import Any

import torch

from ovdet.io.images import ImageInput, load_image
from ovdet.types import Regions


def as_image(image: ImageInput) -> torch.Tensor:
    """(3, H, W) uint8 tensors pass as they are; anything else goes through `load_image`."""
    is_chw = isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3
    return image if is_chw and image.dtype == torch.uint8 else load_image(image)


def as_regions(regions: Regions | Any, image: torch.Tensor) -> Regions:
    """`Regions` pass as they are; (N, 4) xyxy boxes are checked and clipped to the image
    (`ops.boxes.validate_input_boxes`)."""
    from ovdet.ops.boxes import validate_input_boxes

    if isinstance(regions, Regions):
        return regions
    size = (int(image.shape[-2]), int(image.shape[-1]))
    boxes = torch.as_tensor(regions, dtype=torch.float32).reshape(-1, 4)
    return Regions(validate_input_boxes(boxes, size), size)
