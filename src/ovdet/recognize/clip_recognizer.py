"""CLIP behind the `Recognizer` protocol: name given regions with crops or one dense map."""

from __future__ import annotations

from typing import Any

import torch

from ovdet.models.vlm import VisionLanguageModel
from ovdet.recognize.core import recognize
from ovdet.recognize.crop import CropEmbedder
from ovdet.recognize.dense import DenseEmbedder
from ovdet.recognize.inputs import ImageInput, as_image
from ovdet.types import Regions
from ovdet.vocab.parse import VocabularyInput

METHODS = ("crop", "dense")


class ClipRecognizer:
    """`recognize_regions(image, regions, vocab) -> Regions` with a frozen CLIP.

    Args:
        clip: the vision-language model.
        method: "crop" (1x + 1.5x crops; accurate, a pass per box) or "dense" (one pass +
            RoIAlign; fast).
        templates: prompt set of the vocabulary's text embeddings.
        text_cache: a `TextEmbeddingCache`, None for none, "default" for ~/.cache/ovdet.
        dense_size: input side of the dense pass (default: the model's `dense_size`).
    """

    def __init__(
        self,
        clip: VisionLanguageModel,
        method: str = "crop",
        templates: str = "ensemble",
        text_cache: Any = "default",
        dense_size: int | None = None,
    ) -> None:
        from ovdet.errors import ConfigError
        from ovdet.vocab.cache import resolve_cache
        from ovdet.vocab.embed import TextEmbedder

        if method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
        self.clip, self.method = clip, method
        self.embedder = CropEmbedder(clip) if method == "crop" else DenseEmbedder(clip, dense_size)
        cache = resolve_cache(text_cache)
        self.text = TextEmbedder(clip, templates, cache)

    def recognize_regions(
        self, image: ImageInput, regions: Regions | torch.Tensor, vocab: VocabularyInput
    ) -> Regions:
        """Name each region: labels, scores, embeddings and data["class_scores"] (N, C). The
        image may be a path, PIL image or array, the vocabulary an inline list, a file or a
        list of names."""
        text = self.text.embed(vocab)  # the embedder parses an inline list or names
        return recognize(as_image(image), regions, text, self.embedder, self.clip.logit_scale)
