"""Resumable results of a long pass: JSON shards written atomically, listed once complete.

`index.json` holds the run's signature (what produced the shards: model, vocabulary, image list)
and, per shard, the keys of the items it covers. A killed run resumes after its last complete
shard; a run with another signature is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ovdet.errors import ConfigError, FormatError
from ovdet.io.atomic import write_json


class ResultShards:
    """JSON shards under `folder`, each {"keys": [...], **record}.

    Args:
        folder: where the shards live (created on the first write).
        signature: JSON-able description of the run; resuming needs the same one.
    """

    def __init__(self, folder: str | os.PathLike, signature: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.signature = json.loads(json.dumps(signature))
        index = self.folder / "index.json"
        if not index.is_file():
            self.index: dict[str, Any] = {"signature": self.signature, "shards": {}}
            return
        try:
            self.index = json.loads(index.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.index = None
        shards = self.index.get("shards") if isinstance(self.index, dict) else None
        if not isinstance(shards, dict):
            raise FormatError(f"{index} is damaged; delete {self.folder} to start over")
        if self.index.get("signature") != self.signature:
            raise ConfigError(
                f"{self.folder} holds a run with another model, vocabulary or image list; "
                "delete it to start over, or write elsewhere"
            )
        missing = [n for n in shards if not (self.folder / n).is_file()]
        if missing:
            raise FormatError(f"{self.folder} lacks its shard {missing[0]}; delete the folder")

    def done(self) -> set[str]:
        """Keys of every completed shard."""
        return {k for keys in self.index["shards"].values() for k in keys}

    def add(self, keys: list[str], record: dict[str, Any]) -> None:
        """Write one shard (atomically), then list it."""
        name = f"shard_{len(self.index['shards']):05d}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / name, {"keys": keys, **record})
        self.index["shards"][name] = list(keys)
        write_json(self.folder / "index.json", self.index)

    def records(self) -> Iterator[dict[str, Any]]:
        """The shards' records in the order they were written, read one at a time."""
        for name in self.index["shards"]:
            try:
                yield json.loads((self.folder / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise FormatError(f"the shard {self.folder / name} is damaged: {e}") from None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
