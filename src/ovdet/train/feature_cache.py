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

from ovdet.errors import ConfigError, FormatError
from ovdet.io.atomic import atomic_path, write_json


class ShardedCache:
    """Per-image tensors in shards of `shard_size` images under `folder`."""

    def __init__(self, folder: str | os.PathLike, shard_size: int = 256) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ConfigError(f"shard size must be an integer >= 1, got {shard_size!r}")
        self.folder, self.shard_size = Path(folder), shard_size
        if self.folder.exists() and not self.folder.is_dir():
            raise FormatError(f"the cache folder {self.folder} is a file")
        self.index: dict[str, Any] = _read_index(self.folder / "index.json")

    def done(self) -> set[str]:
        """Image ids (as strings) of every completed shard."""
        return {i for ids in self.index["shards"].values() for i in ids}

    def build(
        self,
        image_ids: Sequence[Any],
        compute: Callable[[Any], dict[str, torch.Tensor] | None],
        metadata: dict[str, str] | None = None,
        progress: bool = True,
    ) -> None:
        """Compute `compute(image_id) -> {name: tensor}` for every image not yet cached; an
        image whose `compute` returns None (unreadable: the caller reports it) is left out."""
        done = self.done()
        todo = [i for i in image_ids if str(i) not in done]
        for start in tqdm(
            range(0, len(todo), self.shard_size), desc="cache shards", disable=not progress
        ):
            chunk = todo[start : start + self.shard_size]
            computed = {i: compute(i) for i in chunk}
            kept = [i for i in chunk if computed[i] is not None]
            if not kept:
                continue
            tensors = {
                f"{i}/{k}": v.detach().cpu().contiguous()
                for i in kept
                for k, v in computed[i].items()
            }
            name = f"shard_{len(self.index['shards']):05d}.safetensors"
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.folder / name) as tmp:
                save_file(tensors, str(tmp), metadata=metadata)
            self.index["shards"][name] = [str(i) for i in kept]
            write_json(self.folder / "index.json", self.index)

    def reader(self) -> CacheReader:
        """Random access to single images' tensors without loading whole shards."""
        return CacheReader(self.folder, self.index)

    def metadata(self) -> dict[str, str]:
        """The metadata stored with the first shard ({} for an empty cache)."""
        for name in self.index["shards"]:
            with _open_shard(self.folder / name) as f:
                return dict(f.metadata() or {})
        return {}

    def load(self, image_ids: Iterable[Any] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """image id (string) -> {name: tensor}, for all cached images or those asked for."""
        wanted = None if image_ids is None else {str(i) for i in image_ids}
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, ids in self.index["shards"].items():
            if wanted is not None and not wanted.intersection(ids):
                continue
            try:
                tensors = load_file(self.folder / name)
            except Exception as e:  # SafetensorError or OSError: a truncated shard
                raise FormatError(f"the cache shard {self.folder / name} is damaged: {e}") from None
            for key, value in tensors.items():
                image_id, field = key.rsplit("/", 1)
                if wanted is None or image_id in wanted:
                    out.setdefault(image_id, {})[field] = value
        return out


def _read_index(path: Path) -> dict[str, Any]:
    """The cache's index: {"shards": {name: [image ids]}}; a damaged one is a one-line error."""
    if not path.is_file():
        return {"shards": {}}
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"the cache index {path} is damaged ({e}); delete the folder") from None
    shards = index.get("shards") if isinstance(index, dict) else None
    if not isinstance(shards, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in shards.values()
    ):
        raise FormatError(f"the cache index {path} is not an ovdet cache index")
    missing = [n for n in shards if not (path.parent / n).is_file()]
    if missing:
        raise FormatError(
            f"the cache {path.parent} lacks its shard {missing[0]}; delete the folder"
        )
    return index


def _open_shard(path: Path) -> Any:
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(path, "pt")
    except (SafetensorError, OSError) as e:
        raise FormatError(
            f"the cache shard {path} is damaged ({e}); delete it and its index entry, "
            "or the folder, and build again"
        ) from None


class CacheReader:
    """`reader[image_id] -> {name: tensor}` through memory-mapped shards (opened once each)."""

    def __init__(self, folder: Path, index: dict[str, Any]) -> None:
        self._files = {name: _open_shard(folder / name) for name in index["shards"]}
        self._where = {i: name for name, ids in index["shards"].items() for i in ids}
        self._keys: dict[str, list[str]] = {}
        for f in self._files.values():
            for key in f.keys():
                image_id, _ = key.rsplit("/", 1)
                self._keys.setdefault(image_id, []).append(key)

    def ids(self) -> list[str]:
        return list(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def _file(self, image_id: Any) -> Any:
        if str(image_id) not in self._where:
            raise KeyError(f"image {image_id!r} is not in the cache")
        return self._files[self._where[str(image_id)]]

    def __getitem__(self, image_id: Any) -> dict[str, torch.Tensor]:
        f = self._file(image_id)
        return {k.rsplit("/", 1)[1]: f.get_tensor(k) for k in self._keys[str(image_id)]}

    def field(self, image_id: Any, name: str) -> torch.Tensor:
        """One tensor of one image, read alone."""
        return self._file(image_id).get_tensor(f"{image_id}/{name}")
