"""A COCO-format detection dataset for training: images letterboxed to a square, boxes scaled,
labels indexed into a training vocabulary (e.g. the base categories)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ovdet.errors import FormatError
from ovdet.io.images import load_image
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.ops.letterbox import Letterbox

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Sample:
    """One training image: (3, S, S) normalised pixels, the scale from original to input pixels,
    the valid (h, w) inside the padded square, (G, 4) xyxy boxes and (G,) label indices."""

    image_id: Any
    pixels: torch.Tensor
    scale: float
    size: tuple[int, int]
    boxes: torch.Tensor
    labels: torch.Tensor


def letterbox(image: torch.Tensor, side: int) -> tuple[torch.Tensor, Letterbox]:
    """(3, H, W) uint8 -> (1, 3, side, side) ImageNet-normalised detector input (the image
    resized with bilinear antialiasing, padded black at the bottom and right) and its letterbox."""
    box = Letterbox.fit(*image.shape[-2:], side)
    return normalize_imagenet(box.image(image)), box


def normalize_imagenet(pixels: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 255] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(3, 1, 1)
    return (pixels / 255.0 - mean) / std


class CocoDetection:
    """Images and annotations of a COCO dataset restricted to `category_ids` (in that order).

    Args:
        gt: the loaded dataset dict.
        images_dir: folder the `file_name`s are relative to.
        category_ids: the training vocabulary; annotations of other categories are dropped
            (their objects stay in the images, as the open-vocabulary protocol requires).
        side: input side after letterboxing.
        cache: keep decoded images in memory (small datasets).
    """

    def __init__(
        self,
        gt: dict[str, Any],
        images_dir: str | os.PathLike,
        category_ids: Sequence[int],
        side: int,
        cache: bool = True,
    ) -> None:
        self.images = sorted(gt["images"], key=lambda im: im["id"])
        self.images_dir, self.side, self.cache = Path(images_dir), side, cache
        index = {int(c): i for i, c in enumerate(category_ids)}
        unknown = set(index) - {c["id"] for c in gt["categories"]}
        if unknown:
            raise FormatError(f"training categories {sorted(unknown)} are not in the dataset")
        self.boxes: dict[Any, list[list[float]]] = {im["id"]: [] for im in self.images}
        self.labels: dict[Any, list[int]] = {im["id"]: [] for im in self.images}
        for a in gt["annotations"]:
            if (
                a["category_id"] in index
                and not a.get("iscrowd", 0)
                and a["bbox"][2] >= 1
                and a["bbox"][3] >= 1
            ):
                self.boxes[a["image_id"]].append(a["bbox"])
                self.labels[a["image_id"]].append(index[a["category_id"]])
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
        pixels, box = letterbox(self.image(i), self.side)
        xyxy = xywh_to_xyxy(torch.tensor(self.boxes[im["id"]], dtype=torch.float32).reshape(-1, 4))
        labels = torch.tensor(self.labels[im["id"]], dtype=torch.int64)
        return Sample(im["id"], pixels[0], box.scale, box.resized, box.boxes(xyxy), labels)
