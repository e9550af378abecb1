"""Region search over an image collection: `RegionIndex` (build, search), its region source and
the faiss vector index under it."""

from ovdet.index.store import Hit, RegionIndex

__all__ = ["Hit", "RegionIndex"]
