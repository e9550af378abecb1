"""`RegionIndex`: region proposals of an image collection, searchable by words or by example.

A folder holds:
  meta.json      the CLIP (name and text-tower fingerprint), the region source, the image list
  regions/       per image: boxes, proposal scores, float16 embeddings (sharded, resumable)
  vectors.*      the faiss index over every region's embedding (`VectorIndex`), with the row ->
                 (image, region) table and the count of images indexed (its commit point)

`build` is incremental and resumable: images not yet listed are appended, their regions computed
shard by shard (a killed build resumes after its last shard), and only their vectors are added to
the index. Unreadable images are reported and stored with no regions.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ovdet.data.image_list import ImageList
from ovdet.errors import ConfigError, FormatError, ImageError, OvdetError
from ovdet.index.vectors import VectorIndex
from ovdet.io.atomic import write_json
from ovdet.io.images import load_image
from ovdet.models.vlm import VisionLanguageModel
from ovdet.train.feature_cache import ShardedCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One search result: the image, the region's box (xyxy pixels) and cosine score."""

    image: str
    box: list[float]
    score: float
    proposal_score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "box": [round(v, 2) for v in self.box],
            "score": round(self.score, 5),
            "proposal_score": round(self.proposal_score, 5),
        }


def _empty(dim: int) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "embeddings": torch.zeros(0, dim, dtype=torch.float16),
    }


def _source_work(setup: Any) -> Any:
    """In a Ray actor: build the region source once; its work maps a list of images."""
    source = setup()
    return lambda images, _payloads: [source(image) for image in images]


def _from_ray(setup: Any, listed: list[str], todo: list[int], actors: int, skipped: list, dim: int):
    """A `compute(i)` for `ShardedCache.build` that takes image i's regions from Ray actors
    (which see the images in `todo` order, the order `build` asks for them)."""
    from functools import partial

    from ovdet.engines.ray_data import ray_map_images

    produced = ray_map_images([listed[i] for i in todo], partial(_source_work, setup), 8, actors)

    def compute(i: int) -> dict[str, torch.Tensor]:
        k, regions, error = next(produced)
        if todo[k] != i:
            raise RuntimeError(f"Ray returned image {todo[k]} where {i} was expected")
        if error is not None:
            skipped.append(listed[i])
            log.warning("skipped %s: %s", listed[i], error)
            return _empty(dim)
        return regions

    return compute


class RegionIndex:
    """An index folder (see the module docstring). `RegionIndex(folder)` opens or starts one."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise OvdetError(f"the index {self.folder} is a file, not a folder")
        path = self.folder / "meta.json"
        self.meta: dict[str, Any] | None = None
        if path.is_file():
            try:
                self.meta = json.loads(path.read_text())
            except ValueError:
                self.meta = {}
            if not isinstance(self.meta, dict) or not isinstance(self.meta.get("images"), list):
                raise FormatError(f"{path} is damaged; build the index again")

    @property
    def images(self) -> list[str]:
        return [] if self.meta is None else list(self.meta["images"])

    def check_model(self, clip: VisionLanguageModel) -> None:
        """Refuse a query model other than the one the index was built with."""
        if self.meta is None:
            raise OvdetError(f"{self.folder} is not a region index (build one: ovdet index build)")
        if clip.fingerprint != self.meta["clip_fingerprint"]:
            raise ConfigError(
                f"the index {self.folder} was built with {self.meta['clip']!r}; "
                "query it with the same CLIP (or build another index)"
            )

    def build(
        self,
        images: ImageList,
        source: Any,
        clip_name: str,
        clip: VisionLanguageModel,
        shard_size: int = 64,
        progress: bool = True,
        ray_setup: Any = None,
        actors: int = 2,
        signature: dict[str, Any] | None = None,
    ) -> dict[str, int]:
        """Add every image not yet indexed -> counts of images added, regions and skipped.

        `source(image) -> {"boxes", "scores", "embeddings"}` (an `index.regions.RegionSource`).
        With `ray_setup` (a picklable function of no arguments returning such a source), the
        regions are computed by `actors` Ray actors and written here exactly as locally; then
        `source` may be None and `signature` (`index.regions.region_signature`) says what the
        actors' sources compute."""
        found = source.signature() if signature is None else signature
        signature = {"clip": clip_name, "clip_fingerprint": clip.fingerprint, **found}
        if self.meta is None:
            self.meta = {**signature, "images": [], "skipped": []}
        elif {k: self.meta.get(k) for k in signature} != signature:
            raise ConfigError(
                f"the index {self.folder} was built with other settings "
                f"({ {k: self.meta.get(k) for k in signature} }); build another index"
            )
        known = set(self.meta["images"])
        new = [p.resolve().as_posix() for p in images.paths]
        self.meta["images"] += [p for p in dict.fromkeys(new) if p not in known]
        write_json(self.folder / "meta.json", self.meta, indent=1)
        cache, listed = ShardedCache(self.folder / "regions", shard_size), self.meta["images"]
        done = cache.done()
        todo = [i for i in range(len(listed)) if str(i) not in done]
        skipped = []

        def compute(i: int) -> dict[str, torch.Tensor]:
            try:
                return source(load_image(listed[i]))
            except ImageError as e:
                skipped.append(listed[i])
                log.warning("skipped %s: %s", listed[i], e)
                return _empty(clip.embed_dim)

        if ray_setup is not None:
            compute = _from_ray(ray_setup, listed, todo, actors, skipped, clip.embed_dim)
        bar = tqdm(total=len(todo), desc="index", unit="img", disable=not progress)
        for start in range(0, len(todo), shard_size):
            chunk = todo[start : start + shard_size]
            cache.build(chunk, compute, progress=False)
            bar.update(len(chunk))
        bar.close()
        if skipped:
            self.meta["skipped"] += skipped
            write_json(self.folder / "meta.json", self.meta, indent=1)
        return {"added": len(todo), "skipped": len(skipped), **self._add_vectors(cache, clip)}

    def _add_vectors(self, cache: ShardedCache, clip: VisionLanguageModel) -> dict[str, int]:
        """Add the regions of images cached but not yet in the vector index."""
        state = VectorIndex.saved_extra(self.folder)
        if state is None:
            vectors, rows, indexed = VectorIndex(clip.embed_dim), np.zeros((0, 2), np.int64), 0
        else:
            vectors, indexed = VectorIndex.load(self.folder), state["images_indexed"]
            rows = np.load(self.folder / state["rows"])
        reader, total = cache.reader(), len(self.meta["images"])
        new_vectors, new_rows = [], []
        for i in range(indexed, total):
            emb = reader.field(i, "embeddings").float().numpy()
            new_vectors.append(emb)
            new_rows.append(np.stack([np.full(len(emb), i), np.arange(len(emb))], 1))
        if new_vectors:
            vectors.add(np.concatenate(new_vectors))
            rows = np.concatenate([rows, *new_rows]).astype(np.int64)
        name = f"rows.{len(rows)}.npy"
        np.save(self.folder / name, rows)  # named by size: the commit below decides which counts
        vectors.save(self.folder, {"images_indexed": total, "rows": name})
        for old in self.folder.glob("rows.*.npy"):
            if old.name != name:
                old.unlink(missing_ok=True)
        return {"regions": len(rows), "images": total}

    def search(self, queries: torch.Tensor, top_k: int) -> list[list[Hit]]:
        """(Q, D) query embeddings -> for each, its `top_k` regions across the collection."""
        state = VectorIndex.saved_extra(self.folder)
        if self.meta is None or state is None:
            raise OvdetError(f"{self.folder} is not a region index (build one: ovdet index build)")
        vectors = VectorIndex.load(self.folder)
        rows = np.load(self.folder / state["rows"])
        reader = ShardedCache(self.folder / "regions").reader()
        scores, found = vectors.search(queries.float().cpu().numpy(), top_k)
        out = []
        for q_scores, q_rows in zip(scores, found, strict=True):
            hits = []
            for score, row in zip(q_scores.tolist(), q_rows.tolist(), strict=True):
                if row < 0:
                    continue
                image, k = rows[row].tolist()
                fields = reader[image]
                hits.append(
                    Hit(
                        self.meta["images"][image],
                        fields["boxes"][k].tolist(),
                        float(score),
                        float(fields["scores"][k]),
                    )
                )
            out.append(hits)
        return out
