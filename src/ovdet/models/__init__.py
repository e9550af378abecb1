"""Frozen foundation models behind small interfaces (transformers is the model zoo)."""

from ovdet._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ClipModel": "ovdet.models.clip",
        "BUNDLED": "ovdet.models.bundled",
        "list_models": "ovdet.models.bundled",
        "load_model": "ovdet.models.loader",
        "CLIP_ALIASES": "ovdet.models.registry",
        "VisionLanguageModel": "ovdet.models.vlm",
    },
)
