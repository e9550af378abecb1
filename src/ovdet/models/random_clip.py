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


def save_random_clip(out_dir: str | os.PathLike, preset: str = "tiny", seed: int = 0) -> Path:
    """Build a random-weight `CLIPModel` of `preset` size and save model, tokenizer and
    pre-processor config to `out_dir`, loadable by `ClipModel.from_pretrained(out_dir)`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    p = PRESETS[preset]
    vocab = char_vocab()
    text = dict(
        p["text"],
        vocab_size=max(len(vocab), 49408 if preset != "tiny" else len(vocab)),
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    config = CLIPConfig(text_config=text, vision_config=p["vision"], **p["clip"])
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(out)
    size = p["vision"]["image_size"]
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "image_mean": list(OPENAI_MEAN),
                "image_std": list(OPENAI_STD),
                "size": {"shortest_edge": size},
                "crop_size": {"height": size, "width": size},
                "do_center_crop": True,
            }
        )
    )
    return out
