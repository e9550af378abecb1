"""CoDet's concept groups (Ma et al., NeurIPS 2023; METHODS.md section 4): the images whose
captions name a concept form its group, and training draws a concept uniformly, then `g` of its
images, which must share an object of that concept.

A caption names a concept as `data.captions.caption_labels` reads it (the vocabulary's names and
synonyms as whole words, plurals accepted; the official code's WordNet noun parsing is replaced by
the vocabulary, with no NLP dependency).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ovdet.data.captions import CaptionedImage, caption_labels
from ovdet.errors import OvdetError
from ovdet.types import Vocabulary


@dataclass(frozen=True)
class ConceptIndex:
    """labels[i]: the concept indices image i's captions name; images_of[c]: the images naming
    concept c, ascending."""

    labels: tuple[tuple[int, ...], ...]
    images_of: dict[int, tuple[int, ...]]

    @classmethod
    def build(cls, items: list[CaptionedImage], vocab: Vocabulary) -> ConceptIndex:
        labels = tuple(
            tuple(sorted({c for text in item.captions for c in caption_labels(text, vocab)}))
            for item in items
        )
        images_of: dict[int, list[int]] = {}
        for i, concepts in enumerate(labels):
            for c in concepts:
                images_of.setdefault(c, []).append(i)
        return cls(labels, {c: tuple(v) for c, v in sorted(images_of.items())})

    def groupable(self, g: int) -> list[int]:
        """The concepts named by at least `g` images (those a group of `g` can be drawn for)."""
        return [c for c, images in self.images_of.items() if len(images) >= g]

    def require(self, g: int) -> list[int]:
        """The groupable concepts; an error that says why when there is none."""
        concepts = self.groupable(g)
        if not concepts:
            most = max((len(v) for v in self.images_of.values()), default=0)
            raise OvdetError(
                f"no concept is named by {g} captioned images (at most {most}); lower the group "
                "size or add captions that name the vocabulary"
            )
        return concepts

    def sample_group(self, g: int, generator: torch.Generator) -> tuple[int, list[int]]:
        """A concept drawn uniformly among the groupable ones, and `g` distinct images naming it
        (the first is the group's first query; every image takes its turn)."""
        concepts = self.require(g)
        c = concepts[int(torch.randint(len(concepts), (1,), generator=generator))]
        images = self.images_of[c]
        order = torch.randperm(len(images), generator=generator)[:g]
        return c, [images[int(j)] for j in order]
