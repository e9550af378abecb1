"""Image-caption data in COCO captions format, and the image-level labels a caption names.

A captions file is COCO's `captions_*.json`: {"images": [{"id", "file_name", ...}],
"annotations": [{"image_id", "caption"}, ...]} (several captions per image allowed; extra fields
ignored). No boxes are read: weakly supervised methods (RKD's PIS, CoDet) learn from the words.

A caption names category c when c's name or one of its synonyms occurs in it as whole words
(case-insensitive; plural "s"/"es" accepted), longer names first so that "half circle" is not
also read as "circle" (Detic's and RKD's image-label parsing).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ovdet.data.coco import letterbox
from ovdet.errors import FormatError
from ovdet.io.coco import read_json
from ovdet.io.images import load_image
from ovdet.ops.letterbox import Letterbox
from ovdet.types import Vocabulary


@dataclass(frozen=True)
class CaptionedImage:
    image_id: Any
    file_name: str
    captions: tuple[str, ...]


def load_captions(path: str | os.PathLike) -> list[CaptionedImage]:
    """Every image of a COCO captions file that has at least one caption, in the file's order."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise FormatError(f"{path}: a COCO captions file is an object with an 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise FormatError(f"{path}: a COCO captions file needs an 'annotations' list of captions")
    texts: dict[Any, list[str]] = {}
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not isinstance(a.get("caption"), str) or "image_id" not in a:
            raise FormatError(
                f"{path}: caption {i} needs 'image_id' and a string 'caption', got {a!r}"[:300]
            )
        texts.setdefault(a["image_id"], []).append(a["caption"])
    out = []
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise FormatError(f"{path}: image {i} needs 'id' and 'file_name', got {im!r}"[:300])
        if im["id"] in texts:
            out.append(CaptionedImage(im["id"], im["file_name"], tuple(texts[im["id"]])))
    unknown = set(texts) - {im.image_id for im in out}
    if unknown:
        raise FormatError(
            f"{path}: captions refer to image ids not in 'images': {sorted(unknown, key=str)[:5]}"
        )
    if not out:
        raise FormatError(f"{path}: no image has a caption")
    return out


@dataclass
class CaptionSample:
    """One captioned image as the detector sees it: (3, S, S) normalised pixels, the scale from
    image to input pixels and the valid (h, w) inside the padded square."""

    pixels: torch.Tensor
    scale: float
    size: tuple[int, int]


class CaptionDataset:
    """Captioned images under `images_dir`, letterboxed to `side` (decoded once, kept)."""

    def __init__(self, items: list[CaptionedImage], images_dir: str | os.PathLike, side: int):
        self.items, self.images_dir, self.side = items, Path(images_dir), side
        self._decoded: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> torch.Tensor:
        if i not in self._decoded:
            self._decoded[i] = load_image(self.images_dir / self.items[i].file_name)
        return self._decoded[i]

    def scale(self, i: int) -> float:
        return Letterbox.fit(*self.image(i).shape[-2:], self.side).scale

    def __getitem__(self, i: int) -> CaptionSample:
        pixels, box = letterbox(self.image(i), self.side)
        return CaptionSample(pixels[0], box.scale, box.resized)


def _words(text: str) -> str:
    return " " + " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split()) + " "


def caption_labels(text: str, vocab: Vocabulary) -> list[int]:
    """Indices of the classes of `vocab` that `text` names, in vocabulary order."""
    phrases = sorted(
        ((_words(n).strip(), i) for i in range(len(vocab)) for n in vocab.all_names(i)),
        key=lambda p: -len(p[0]),
    )
    rest, found = _words(text), set()
    for phrase, i in phrases:
        if not phrase:
            continue
        pattern = re.compile(rf" {re.escape(phrase)}(?:e?s)? ")
        if pattern.search(rest):
            found.add(i)
            rest = pattern.sub(" | ", rest)  # a longer name's words are not read again
    return sorted(found)
