"""A COCO-format detection dataset for training: images letterboxed to a square, boxes scaled,
labels indexed into a training vocabulary (e.g. the base categories)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ovdet.errors import FormatError
from ovdet.io.images import load_image
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.ops.letterbox import Letterbox
from ovdet.ops.masks import annotation_mask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Sample:
    """One training image: (3, S, S) normalised pixels, the scale from original to input pixels,
    the valid (h, w) inside the padded square, (G, 4) xyxy boxes, (G,) label indices and, when
    the dataset reads masks, (G, S, S) bool masks in the input's pixels."""

    image_id: Any
    pixels: torch.Tensor
    scale: float
    size: tuple[int, int]
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None


def normalize_imagenet(pixels: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 255] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(3, 1, 1)
    return (pixels / 255.0 - mean) / std


def letterbox(
    image: torch.Tensor,
    side: int,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = normalize_imagenet,
    short: int = 0,
) -> tuple[torch.Tensor, Letterbox]:
    """(3, H, W) uint8 -> (1, 3, side, side) detector input (the image resized with bilinear
    antialiasing, padded black at the bottom and right, then `normalize`d: ImageNet's by
    default, None leaves [0, 255]) and its letterbox (`short`: see `Letterbox.fit`)."""
    box = Letterbox.fit(*image.shape[-2:], side, short)
    pixels = box.image(image)
    return (pixels if normalize is None else normalize(pixels)), box


class CocoDetection:
    """Images and annotations of a COCO dataset restricted to `category_ids` (in that order).

    Args:
        gt: the loaded dataset dict.
        images_dir: folder the `file_name`s are relative to.
        category_ids: the training vocabulary; annotations of other categories are dropped
            (their objects stay in the images, as the open-vocabulary protocol requires).
        side: input side after letterboxing.
        cache: keep decoded images in memory (small datasets).
        masks: read each annotation's "segmentation" (polygons or RLE) as a mask too.
        normalize: (..., 3, H, W) [0, 255] pixels -> the model's input, applied after padding
            (default ImageNet's); None keeps pixels in [0, 255], padded black (a model that
            normalises them itself, e.g. CLIP's for Open-Vocabulary SAM).
        short: resize the short side to this, the long side at most `side` (0: the long side
            to `side`); the input stays a side x side square, padded.
    """

    def __init__(
        self,
        gt: dict[str, Any],
        images_dir: str | os.PathLike,
        category_ids: Sequence[int],
        side: int,
        cache: bool = True,
        masks: bool = False,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = normalize_imagenet,
        short: int = 0,
    ) -> None:
        self.images = sorted(gt["images"], key=lambda im: im["id"])
        self.images_dir, self.side, self.cache = Path(images_dir), side, cache
        self.short = short
        self.with_masks, self.normalize = masks, normalize
        index = {int(c): i for i, c in enumerate(category_ids)}
        unknown = set(index) - {c["id"] for c in gt["categories"]}
        if unknown:
            raise FormatError(f"training categories {sorted(unknown)} are not in the dataset")
        self.boxes: dict[Any, list[list[float]]] = {im["id"]: [] for im in self.images}
        self.labels: dict[Any, list[int]] = {im["id"]: [] for im in self.images}
        self.segments: dict[Any, list[Any]] = {im["id"]: [] for im in self.images}
        for a in gt["annotations"]:
            if (
                a["category_id"] in index
                and not a.get("iscrowd", 0)
                and a["bbox"][2] >= 1
                and a["bbox"][3] >= 1
            ):
                if masks and not a.get("segmentation"):
                    raise FormatError(
                        f"annotation {a.get('id')!r} has no segmentation; a mask head trains "
                        "on instance masks (polygons or RLE)"
                    )
                self.boxes[a["image_id"]].append(a["bbox"])
                self.labels[a["image_id"]].append(index[a["category_id"]])
                self.segments[a["image_id"]].append(a.get("segmentation"))
        self._decoded: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        if i not in self._decoded:
            img = load_image(self.images_dir / self.images[i]["file_name"])
            if not self.cache:
                return img
            self._decoded[i] = img
        return self._decoded[i]

    def __getitem__(self, i: int) -> Sample:
        im = self.images[i]
        pixels, box = letterbox(self.image(i), self.side, self.normalize, self.short)
        xyxy = xywh_to_xyxy(torch.tensor(self.boxes[im["id"]], dtype=torch.float32).reshape(-1, 4))
        labels = torch.tensor(self.labels[im["id"]], dtype=torch.int64)
        masks = self.masks(i, box) if self.with_masks else None
        return Sample(im["id"], pixels[0], box.scale, box.resized, box.boxes(xyxy), labels, masks)

    def input_size(self, i: int) -> tuple[int, int]:
        """Image i's (h, w) inside the input, from the file's width and height (no decoding)."""
        im = self.images[i]
        if not (isinstance(im.get("width"), int) and isinstance(im.get("height"), int)):
            raise FormatError(
                f"image {im.get('id')!r} has no integer width and height in the annotation "
                f"file (got {im.get('width')!r} x {im.get('height')!r}); aspect-ratio grouping "
                "reads them"
            )
        return Letterbox.fit(im["height"], im["width"], self.side, self.short).resized

    def masks(self, i: int, box: Letterbox) -> torch.Tensor:
        """(G, S, S) bool masks of image i's annotations in the letterboxed input's pixels."""
        h, w = box.original
        segments = self.segments[self.images[i]["id"]]
        if not segments:
            return torch.zeros(0, self.side, self.side, dtype=torch.bool)
        full = torch.stack([annotation_mask(s, h, w) for s in segments])[:, None].float()
        resized = F.interpolate(full, size=box.resized, mode="bilinear", align_corners=False)
        nh, nw = box.resized
        return F.pad(resized[:, 0], (0, self.side - nw, 0, self.side - nh)) >= 0.5
