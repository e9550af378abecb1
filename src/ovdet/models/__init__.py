"""Frozen foundation models behind small interfaces (transformers is the model zoo)."""

from ovdet.models.clip import ClipModel, load_clip
from ovdet.models.registry import CLIP_ALIASES

__all__ = ["CLIP_ALIASES", "ClipModel", "load_clip"]
