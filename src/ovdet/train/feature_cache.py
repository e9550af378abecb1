"""A sharded, resumable on-disk cache of per-image tensors (safetensors).

Shards are written atomically and listed in `index.json` (also atomic) only once complete, so a
killed run resumes at the first image of the first unfinished shard and never reads half a file.
Keys inside a shard are `<image id>/<name>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ovdet.io.atomic import atomic_path, write_json


class ShardedCache:
    """Per-image tensors in shards of `shard_size` images under `folder`."""

    def __init__(self, folder: str | os.PathLike, shard_size: int = 256) -> None:
        self.folder, self.shard_size = Path(folder), shard_size
        index = self.folder / "index.json"
        self.index: dict[str, Any] = (
            json.loads(index.read_text()) if index.is_file() else {"shards": {}}
        )

    def done(self) -> set[str]:
        """Image ids (as strings) of every completed shard."""
        return {i for ids in self.index["shards"].values() for i in ids}

    def build(
        self,
        image_ids: Sequence[Any],
        compute: Callable[[Any], dict[str, torch.Tensor]],
        metadata: dict[str, str] | None = None,
        progress: bool = True,
    ) -> None:
        """Compute `compute(image_id) -> {name: tensor}` for every image not yet cached."""
        done = self.done()
        todo = [i for i in image_ids if str(i) not in done]
        for start in tqdm(
            range(0, len(todo), self.shard_size), desc="cache shards", disable=not progress
        ):
            chunk = todo[start : start + self.shard_size]
            tensors = {
                f"{i}/{k}": v.detach().cpu().contiguous()
                for i in chunk
                for k, v in compute(i).items()
            }
            name = f"shard_{len(self.index['shards']):05d}.safetensors"
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.folder / name) as tmp:
                save_file(tensors, str(tmp), metadata=metadata)
            self.index["shards"][name] = [str(i) for i in chunk]
            write_json(self.folder / "index.json", self.index)

    def load(self, image_ids: Iterable[Any] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """image id (string) -> {name: tensor}, for all cached images or those asked for."""
        wanted = None if image_ids is None else {str(i) for i in image_ids}
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, ids in self.index["shards"].items():
            if wanted is not None and not wanted.intersection(ids):
                continue
            for key, value in load_file(self.folder / name).items():
                image_id, field = key.rsplit("/", 1)
                if wanted is None or image_id in wanted:
                    out.setdefault(image_id, {})[field] = value
        return out
