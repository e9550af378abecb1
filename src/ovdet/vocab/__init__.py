"""Vocabularies, prompt templates, text-embedding cache and attribute expansion."""

from ovdet._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "TextEmbeddingCache": "ovdet.vocab.cache",
        "TextEmbedder": "ovdet.vocab.embed",
        "expand_attributes": "ovdet.vocab.embed",
        "COCO80": "ovdet.vocab.parse",
        "parse_vocabulary": "ovdet.vocab.parse",
        "TEMPLATE_SETS": "ovdet.vocab.prompts",
        "get_templates": "ovdet.vocab.prompts",
    },
)
