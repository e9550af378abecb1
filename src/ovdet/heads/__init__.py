"""Trainable modules on top of frozen models."""

from ovdet.heads.text_classifier import TextClassifier

__all__ = ["TextClassifier"]
