"""Vocabularies, prompt templates, text-embedding cache and attribute expansion."""

from ovdet.vocab.cache import TextEmbeddingCache
from ovdet.vocab.embed import TextEmbedder, expand_attributes
from ovdet.vocab.parse import COCO80, parse_vocabulary
from ovdet.vocab.prompts import TEMPLATE_SETS, get_templates

__all__ = [
    "COCO80",
    "TEMPLATE_SETS",
    "TextEmbedder",
    "TextEmbeddingCache",
    "expand_attributes",
    "get_templates",
    "parse_vocabulary",
]
