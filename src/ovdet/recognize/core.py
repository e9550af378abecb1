"""Zero-shot classification of images and recognition of regions against a vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from ovdet.errors import BoxError
from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import validate_input_boxes
from ovdet.types import Regions, Vocabulary
from ovdet.vocab.embed import expand_attributes


class RegionEmbedder(Protocol):
    def embed(self, image: torch.Tensor, xyxy: torch.Tensor) -> torch.Tensor: ...


def class_probabilities(
    embeddings: torch.Tensor, text: torch.Tensor, logit_scale: float
) -> torch.Tensor:
    """(N, D) and (C, D) normalised embeddings -> (N, C) softmax(logit_scale * cosine)."""
    logits = logit_scale * embeddings.float() @ text.float().to(embeddings.device).t()
    return logits.softmax(dim=-1)


@torch.inference_mode()
def classify_images(
    clip: VisionLanguageModel,
    images: Sequence[torch.Tensor],
    text: torch.Tensor,
    batch_size: int = 32,
) -> torch.Tensor:
    """CLIP zero-shot: B (3, H, W) uint8 images, (C, D) class embeddings -> (B, C) probabilities."""
    probs = []
    for i in range(0, len(images), batch_size):
        emb = clip.encode_image(clip.preprocess(images[i : i + batch_size]))
        probs.append(class_probabilities(emb, text, clip.logit_scale).cpu())
    return torch.cat(probs) if probs else torch.empty(0, text.shape[0])


def recognize(
    image: torch.Tensor,
    regions: Regions | torch.Tensor,
    text: torch.Tensor,
    embedder: RegionEmbedder,
    logit_scale: float,
) -> Regions:
    """Name each region with the vocabulary whose (C, D) embeddings are `text`.

    Args:
        image: (3, H, W) uint8 image.
        regions: `Regions` of this image, or (N, 4) xyxy boxes; boxes are validated and clipped.
        text: (C, D) class embeddings (see `TextEmbedder.embed`).
        embedder: `CropEmbedder` or `DenseEmbedder`.
        logit_scale: the CLIP inverse temperature.

    Returns:
        Regions with labels (argmax), scores (its probability), embeddings (N, D) and
        data["class_scores"] (N, C) probabilities.
    """
    size = (int(image.shape[-2]), int(image.shape[-1]))
    if not isinstance(regions, Regions):
        regions = Regions(torch.as_tensor(regions, dtype=torch.float32).reshape(-1, 4), size)
    if regions.image_size != size:
        raise BoxError(
            f"regions are for an image of size {regions.image_size}, the image is {size}"
        )
    boxes = validate_input_boxes(regions.xyxy, size)
    emb = embedder.embed(image, boxes).cpu()
    probs = class_probabilities(emb, text.cpu(), logit_scale)
    scores, labels = (
        probs.max(dim=1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    )
    return Regions(
        boxes.cpu(),
        size,
        scores=scores,
        labels=labels,
        masks=regions.masks,
        embeddings=emb,
        data={**regions.data, "class_scores": probs},
    )


def requery(regions: Regions, text: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """On-the-fly interactive detection: re-score recognised regions against new (T, D) texts.

    Returns (N, T) probabilities, a softmax over the T queries for each region (ViLD, section 4.4).
    """
    if regions.embeddings is None:
        raise ValueError("requery needs regions with embeddings (run recognize first)")
    return class_probabilities(regions.embeddings, text, logit_scale)


def relabel_with_attributes(
    regions: Regions, attribute_text: torch.Tensor, vocab: Vocabulary, logit_scale: float
) -> tuple[Regions, list[str]]:
    """Expand recognised regions' labels to "<attribute> <name>" (ViLD's P(v, a | r)).

    Args:
        regions: output of `recognize` (needs embeddings and data["class_scores"]).
        attribute_text: (A, D) embeddings of `vocab.attributes`.
        vocab: the vocabulary the class scores are over.
        logit_scale: the CLIP inverse temperature.

    Returns:
        Regions whose labels index the V * A joint names (scores, data["class_scores"] joint),
        and those names.
    """
    if regions.embeddings is None or "class_scores" not in regions.data:
        raise ValueError(
            "relabel_with_attributes needs regions from recognize (embeddings, class_scores)"
        )
    p_attr = class_probabilities(regions.embeddings, attribute_text, logit_scale)
    joint, names = expand_attributes(regions.data["class_scores"], p_attr, vocab)
    scores, labels = joint.max(dim=1)
    data = {**regions.data, "class_scores": joint}
    relabelled = Regions(
        regions.xyxy, regions.image_size, scores, labels, regions.masks, regions.embeddings, data
    )
    return relabelled, names
