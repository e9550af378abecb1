"""Open-Vocabulary SAM's training data from files: SAM2CLIP's images with their teacher's cached
embeddings, CLIP2SAM's COCO instances, and the CLIP input both stages build from a batch.

SAM2CLIP distils from images alone: every image of a folder is letterboxed to SAM's input side
and SAM's image embedding of it is cached once (`build_teacher_cache`: sharded, resumable, an
unreadable image reported and left out), so training runs CLIP and the adapter only. The images
are read again at each step (CLIP's input is the same letterbox), their embeddings memory-mapped
from the cache.

CLIP2SAM trains on instance annotations: `ovdet.data.coco.CocoDetection` with masks, pixels kept
in [0, 255] (CLIP normalises them itself), at SAM's side. The shapes world's rendered scenes give
the same `Sample`s (`rendered_samples`), so one loss serves both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovdet.data.coco import Sample, letterbox
from ovdet.errors import ImageError, OvdetError
from ovdet.io.images import load_image
from ovdet.train.feature_cache import CacheReader, ShardedCache

log = logging.getLogger(__name__)
TEACHER_FIELD = "sam"  # the cached tensor's name


def clip_input(features: Any, pixels: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
    """(B, 3, S, S) letterboxed pixels in [0, 255] (padded black) and each image's valid (h, w)
    -> CLIP's normalised input with zero padding: what `Letterbox.image` gives CLIP at inference
    (normalised, then padded), so training sees what `Sam2ClipBackend.set_image` sees."""
    x = features.normalize(pixels)
    side = pixels.shape[-1]
    for i, (h, w) in enumerate(sizes):
        if h < side:
            x[i, :, h:] = 0
        if w < side:
            x[i, :, :, w:] = 0
    return x


@dataclass
class TeacherSample:
    """One SAM2CLIP training image: (3, S, S) letterboxed pixels in [0, 255], their valid (h, w),
    and SAM's (C, g, g) embedding of them."""

    key: str
    pixels: torch.Tensor
    size: tuple[int, int]
    target: torch.Tensor


def build_teacher_cache(
    paths: dict[str, Path],
    sam: Any,
    folder: str | os.PathLike,
    shard_size: int = 64,
    progress: bool = True,
    actors: int = 0,
) -> ShardedCache:
    """SAM's image embedding of every image in `paths` (key -> file), stored as float16 under
    `folder` (resumes a killed run; an unreadable image is reported and left out). `sam` is a
    `SamBackend`; the cache's metadata names it and its side, and a cache of another SAM is
    refused. `actors` > 0: that many Ray actors (each loading the SAM by its name) compute the
    embeddings; the shards are the same."""
    from ovdet.models.registry import stored_name

    cache = ShardedCache(folder, shard_size)
    meta = {"sam": stored_name(sam.name), "side": str(sam.image_size)}  # a path: absolute
    have = cache.metadata()
    if have and have != meta:
        raise OvdetError(
            f"{folder} caches {have.get('sam')} at {have.get('side')} px, not {meta['sam']} at "
            f"{meta['side']} px: delete it, or give another --cache"
        )

    def compute(key: str) -> dict[str, torch.Tensor] | None:
        try:
            image = load_image(paths[key])
        except ImageError as e:
            log.warning("skipped %s: %s", paths[key], e)
            return None
        return {TEACHER_FIELD: sam.set_image(image).embeddings[0].half()}

    if actors:
        compute = _from_ray(cache, paths, meta["sam"], str(sam.device), actors)
    cache.build(list(paths), compute, meta, progress)
    return cache


def _teacher_work(sam_name: str, device: str) -> Any:
    """In a Ray actor: load the SAM once; its work embeds a batch of decoded images."""
    from ovdet.models.sam import SamBackend

    sam = SamBackend.from_pretrained(sam_name, device=device)

    def work(images: list[torch.Tensor], payloads: list[Any]) -> list[dict[str, torch.Tensor]]:
        return [{TEACHER_FIELD: sam.set_image(im).embeddings[0].half().cpu()} for im in images]

    return work


def _from_ray(cache: ShardedCache, paths: dict[str, Path], sam_name: str, device: str, actors):
    """`compute(key)` for `ShardedCache.build`, answered in order by Ray actors."""
    from functools import partial

    from ovdet.engines.ray_data import ray_map_images

    done = cache.done()
    todo = [k for k in paths if k not in done]
    produced = ray_map_images(
        [paths[k] for k in todo], partial(_teacher_work, sam_name, device), actors=actors
    )

    def compute(key: str) -> dict[str, torch.Tensor] | None:
        k, found, error = next(produced)
        if todo[k] != key:
            raise RuntimeError(f"Ray returned image {todo[k]} where {key} was expected")
        if error is not None:
            log.warning("skipped %s: %s", paths[key], error)
            return None
        return found

    return compute


class TeacherImages(torch.utils.data.Dataset):
    """`keys`' images letterboxed to `side`, each with its cached teacher embedding (the cache is
    opened lazily, in whichever DataLoader worker reads it)."""

    def __init__(self, paths: dict[str, Path], keys: list[str], cache: str | Path, side: int):
        self.paths, self.keys, self.folder, self.side = paths, keys, Path(cache), side
        self._reader: CacheReader | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> TeacherSample:
        if self._reader is None:
            self._reader = ShardedCache(self.folder).reader()
        key = self.keys[i]
        pixels, box = letterbox(load_image(self.paths[key]), self.side, None)
        target = self._reader.field(key, TEACHER_FIELD).float()
        return TeacherSample(key, pixels[0], box.resized, target)

    def __getstate__(self) -> dict[str, Any]:  # memory maps do not travel to workers
        return {**self.__dict__, "_reader": None}


def split_held_out(keys: list[str], count: int) -> tuple[list[str], list[str]]:
    """(training keys, held-out keys): the last `count` of the sorted keys are held out (by file
    name, so the split does not move when images are added before them)."""
    keys = sorted(keys)
    if count >= len(keys):
        raise OvdetError(
            f"{len(keys)} readable images cannot hold {count} out for validation and train on "
            "the rest: lower --val-images or add images"
        )
    return keys[: len(keys) - count], keys[len(keys) - count :]


def rendered_samples(world: Any, indices: list[int], novel: torch.Tensor) -> list[Sample]:
    """The shapes world's det-train scenes `indices` as CLIP2SAM `Sample`s: pixels in [0, 255],
    the base objects' boxes, masks and indices among the base classes (novel objects are not
    annotated)."""
    from ovdet.data.shapes.generate import scene_for
    from ovdet.methods.ovsam.clip2sam import scene_prompts

    base_index = {int(c): k for k, c in enumerate((~novel).nonzero()[:, 0].tolist())}
    out = []
    for i in indices:
        scene = scene_for(world.seed, "det-train", i % world.det_train, world)
        boxes, masks, cats = scene_prompts(scene, novel)
        pixels = torch.from_numpy(np.ascontiguousarray(scene.image)).permute(2, 0, 1).float()
        h, w = scene.image.shape[:2]
        labels = torch.tensor([base_index[c] for c in cats], dtype=torch.int64)
        out.append(Sample(i, pixels, 1.0, (h, w), boxes, labels, masks))
    return out
