"""Frozen foundation models behind small interfaces (transformers is the model zoo)."""

from ovdet.models.clip import ClipModel
from ovdet.models.loader import BUNDLED, load_model
from ovdet.models.registry import CLIP_ALIASES
from ovdet.models.vlm import VisionLanguageModel

__all__ = ["BUNDLED", "CLIP_ALIASES", "ClipModel", "VisionLanguageModel", "load_model"]
