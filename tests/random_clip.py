"""Random-weight CLIP checkpoints of real or tiny size, saved like downloaded ones.

Used by the tests (tiny: loads in milliseconds) and the benchmarks (ViT-B/16: same compute as the
real model). The tokenizer is a character-level CLIP BPE tokenizer with no merges, so it needs
no download either.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import torch

from ovdet.models.clip import OPENAI_MEAN, OPENAI_STD

PRESETS: dict[str, dict[str, dict[str, int]]] = {
    "tiny": {
        "text": dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
        ),
        "vision": dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        "clip": dict(projection_dim=16),
    },
    "vit-b16": {
        "text": dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            max_position_embeddings=77,
        ),
        "vision": dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=16,
        ),
        "clip": dict(projection_dim=512),
    },
}


def char_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary of single printable ASCII characters (with and without `</w>`)."""
    chars = [c for c in string.printable if not c.isspace()]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return vocab


def build_random_clip(preset: str = "tiny", seed: int = 0) -> tuple[Any, Any]:
    """A random-weight transformers `CLIPModel` of `preset` size and its character tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    p = PRESETS[preset]
    vocab = char_vocab()
    vocab_size = len(vocab) if preset == "tiny" else 49408
    text = dict(p["text"], vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = CLIPConfig(text_config=text, vision_config=p["vision"], **p["clip"])
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), CLIPTokenizer(vocab=vocab, merges=[])


def save_random_clip(out_dir: str | os.PathLike, preset: str = "tiny", seed: int = 0) -> Path:
    """Save a random-weight CLIP (model, tokenizer, pre-processor config) to `out_dir`,
    loadable by `ClipModel.from_pretrained(out_dir)` like a downloaded checkpoint."""
    model, tokenizer = build_random_clip(preset, seed)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    size = PRESETS[preset]["vision"]["image_size"]
    config = {
        "image_processor_type": "CLIPImageProcessor",
        "image_mean": list(OPENAI_MEAN),
        "image_std": list(OPENAI_STD),
        "size": {"shortest_edge": size},
        "crop_size": {"height": size, "width": size},
        "do_center_crop": True,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(config))
    return out
