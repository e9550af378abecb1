"""Class names -> text embeddings: templates and synonyms averaged, cached across runs.

For each class, every (template, name-or-synonym) prompt is embedded and L2-normalised; the mean
is L2-normalised again (prompt ensembling as in CLIP and ViLD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from ovdet.types import Vocabulary
from ovdet.vocab.cache import TextEmbeddingCache, entry_key
from ovdet.vocab.parse import VocabularyInput, as_vocabulary
from ovdet.vocab.prompts import get_templates

ATTRIBUTE_TEMPLATE_WORD = "{} object"  # an attribute a becomes the class name "a object"


class TextModel(Protocol):
    fingerprint: str

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor: ...


class TextEmbedder:
    """Embeds vocabularies with a text model, a template set and an optional persistent cache.

    Args:
        model: anything with `encode_text(list[str]) -> (T, D)` and a `fingerprint` string.
        templates: a template-set name ("single", "vild", "ensemble") or a list of templates.
        cache: a `TextEmbeddingCache`, or None for no persistent cache.
    """

    def __init__(
        self,
        model: TextModel,
        templates: str | Sequence[str] = "ensemble",
        cache: TextEmbeddingCache | None = None,
    ) -> None:
        self.model = model
        self.templates = get_templates(
            templates if isinstance(templates, str) else tuple(templates)
        )
        self.cache = cache

    def embed_groups(self, groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """Each group (a name and its synonyms) -> one row. Returns (len(groups), D)."""
        keys = [entry_key(g) for g in groups]
        found = (
            self.cache.lookup(self.model.fingerprint, self.templates, keys) if self.cache else {}
        )
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            computed = self._compute([groups[i] for i in missing])
            new = {keys[i]: computed[j] for j, i in enumerate(missing)}
            found = {**found, **new}
            if self.cache:
                labels = {keys[i]: " | ".join(groups[i]) for i in missing}
                self.cache.store(self.model.fingerprint, self.templates, new, labels)
        return torch.stack([found[k].float() for k in keys])

    def _compute(self, groups: Sequence[Sequence[str]]) -> torch.Tensor:
        prompts = [t.format(name) for g in groups for name in g for t in self.templates]
        emb = F.normalize(self.model.encode_text(prompts).float().cpu(), dim=-1)
        sizes = [len(g) * len(self.templates) for g in groups]
        means = torch.stack([chunk.mean(0) for chunk in emb.split(sizes)])
        return F.normalize(means, dim=-1)

    def embed(self, vocab: VocabularyInput) -> torch.Tensor:
        """(C, D) class embeddings of `vocab` (a Vocabulary, an inline list, a file or a list of
        names), averaged over templates and synonyms."""
        vocab = as_vocabulary(vocab)
        return self.embed_groups([vocab.all_names(i) for i in range(len(vocab))])

    def embed_attributes(self, vocab: Vocabulary) -> torch.Tensor:
        """(A, D) embeddings of the vocabulary's attributes, each named "<attribute> object"."""
        if not vocab.attributes:
            raise ValueError("the vocabulary has no attributes")
        return self.embed_groups([(ATTRIBUTE_TEMPLATE_WORD.format(a),) for a in vocab.attributes])


def embed_vocabulary(
    model: TextModel, vocab: Vocabulary, templates: str | Sequence[str] = "ensemble"
) -> torch.Tensor:
    """(C, D) class embeddings of `vocab` through the default on-disk text-embedding cache."""
    return TextEmbedder(model, templates, TextEmbeddingCache()).embed(vocab)


def expand_attributes(
    p_object: torch.Tensor, p_attribute: torch.Tensor, vocab: Vocabulary
) -> tuple[torch.Tensor, list[str]]:
    """ViLD's vocabulary expansion: P(v, a | r) = P(v | r) * P(a | r).

    Args:
        p_object: (N, V) class probabilities of N regions.
        p_attribute: (N, A) attribute probabilities of the same regions.
        vocab: the vocabulary (names and attributes) both were computed with.

    Returns:
        (N, V * A) joint probabilities, column v * A + a, and the V * A names "<attribute> <name>".
    """
    n, v = p_object.shape
    if (
        p_attribute.shape[0] != n
        or v != len(vocab)
        or p_attribute.shape[1] != len(vocab.attributes)
    ):
        raise ValueError(
            f"expected ({n}, {len(vocab)}) and ({n}, {len(vocab.attributes)}) probabilities, "
            f"got {tuple(p_object.shape)} and {tuple(p_attribute.shape)}"
        )
    joint = (p_object[:, :, None] * p_attribute[:, None, :]).reshape(n, -1)
    names = [f"{a} {name}" for name in vocab.names for a in vocab.attributes]
    return joint, names
