"""A persistent text-embedding cache keyed by model fingerprint, template set and class names.

Layout: `<root>/<model fingerprint>/<template-set hash>.safetensors`, one tensor per class keyed
by a hash of its names (the readable names go into the file's metadata). Writes merge with what is
on disk and replace the file atomically, so a crash never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ovdet.io.atomic import atomic_path

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """$OVDET_CACHE, else $XDG_CACHE_HOME/ovdet, else ~/.cache/ovdet."""
    if os.environ.get("OVDET_CACHE"):
        return Path(os.environ["OVDET_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ovdet"


def entry_key(names: Sequence[str]) -> str:
    """Cache key of one class: a hash of its name and synonyms, in order."""
    return hashlib.sha1("\x1f".join(names).encode()).hexdigest()


def templates_key(templates: Sequence[str]) -> str:
    return hashlib.sha1("\x1e".join(templates).encode()).hexdigest()[:16]


class TextEmbeddingCache:
    """Text embeddings on disk, with an in-memory copy of each file read."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "text"
        self._memory: dict[Path, dict[str, torch.Tensor]] = {}
        self._warned = False

    def _file(self, fingerprint: str, templates: Sequence[str]) -> Path:
        return self.root / fingerprint / f"{templates_key(templates)}.safetensors"

    def _load(self, path: Path) -> dict[str, torch.Tensor]:
        if path not in self._memory:
            entries: dict[str, torch.Tensor] = {}
            if path.is_file():
                try:
                    entries = load_file(path)
                except (SafetensorError, OSError) as e:  # a damaged cache is rebuilt, not fatal
                    log.warning("ignoring unreadable text cache %s: %s", path, e)
            self._memory[path] = entries
        return self._memory[path]

    def lookup(
        self, fingerprint: str, templates: Sequence[str], keys: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """The cached (D,) embeddings among `keys`."""
        entries = self._load(self._file(fingerprint, templates))
        return {k: entries[k] for k in keys if k in entries}

    def store(
        self,
        fingerprint: str,
        templates: Sequence[str],
        new: dict[str, torch.Tensor],
        labels: dict[str, str] | None = None,
    ) -> None:
        """Add (D,) embeddings under their keys and rewrite the file atomically."""
        path = self._file(fingerprint, templates)
        entries = self._load(path)
        if path.is_file():  # merge what another process may have written meanwhile
            try:
                entries.update({k: v for k, v in load_file(path).items() if k not in entries})
            except (SafetensorError, OSError):
                pass
        entries.update({k: v.detach().float().cpu().contiguous() for k, v in new.items()})
        metadata = {"templates": "\n".join(templates), **(labels or {})}
        try:
            with atomic_path(path) as tmp:
                save_file(entries, str(tmp), metadata=metadata)
        except OSError as e:  # a read-only or full cache costs speed next time, never the result
            if not self._warned:
                log.warning(
                    "text-embedding cache not written (%s: %s); results are unaffected",
                    e.strerror or e,
                    e.filename or path,
                )
                self._warned = True


def resolve_cache(text_cache: TextEmbeddingCache | str | None) -> TextEmbeddingCache | None:
    """A constructor's `text_cache` argument: "default" (~/.cache/ovdet), None (no disk cache),
    or a cache."""
    return TextEmbeddingCache() if text_cache == "default" else text_cache
