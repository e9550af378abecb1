"""Trainable modules on top of frozen models."""

from ovdet._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "TextClassifier": "ovdet.heads.text_classifier",
    },
)
