"""The images of a dataset-level pass: a COCO file's images in a folder, a folder, or a glob.

Each image gets the id its results will carry: the ground truth's integer `id`, or without
ground truth its path relative to the folder (`ovdet eval` matches such ids by file name).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovdet.errors import FormatError, OvdetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class ImageList:
    """Parallel lists: `ids[i]` is the COCO image id of the file `paths[i]`."""

    ids: list[Any]
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)


def gt_images(gt: dict[str, Any], images_dir: str | os.PathLike, source: str = "--gt") -> ImageList:
    """The images of a loaded COCO dataset, their `file_name`s relative to `images_dir`.

    A missing file is not an error here: the pass reports and skips it like any unreadable image.
    None of them present is (the wrong folder): refused before any work.
    """
    folder = Path(images_dir)
    if not folder.is_dir():
        raise OvdetError(f"image folder not found: {folder}")
    if not gt.get("images"):
        raise FormatError(f"{source} lists no images")
    paths = [folder / str(im["file_name"]) for im in gt["images"]]
    if not any(p.is_file() for p in paths):
        raise OvdetError(
            f"none of the {len(paths)} images {source} lists is under {folder} (the first would be "
            f"{paths[0]}); give the folder its file_names are relative to"
        )
    return ImageList([im["id"] for im in gt["images"]], paths)


def find_images(spec: str | os.PathLike) -> ImageList:
    """Every image file under a folder (recursively, sorted), or matching a glob pattern.

    Raises:
        OvdetError: the folder does not exist, or nothing matches.
    """
    text = str(spec)
    if glob.has_magic(text):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        root = None
    else:
        root = Path(text)
        if not root.is_dir():
            what = "is a file; give its folder or a glob" if root.is_file() else "not found"
            raise OvdetError(f"image folder {what}: {root}")
        paths = sorted(p for p in root.rglob("*") if p.is_file())
    paths = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise OvdetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {text}")
    ids = [p.relative_to(root).as_posix() if root else p.as_posix() for p in paths]
    return ImageList(ids, paths)
