"""Arguments and set-up shared by the subcommands."""

from __future__ import annotations

import argparse

from ovdet.models.loader import load_model
from ovdet.models.vlm import VisionLanguageModel
from ovdet.types import Vocabulary
from ovdet.vocab.cache import TextEmbeddingCache
from ovdet.vocab.embed import TextEmbedder
from ovdet.vocab.parse import parse_vocabulary
from ovdet.vocab.prompts import TEMPLATE_SETS

DEFAULT_CLIP = "clip-b16"


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clip",
        default=DEFAULT_CLIP,
        help=f"CLIP alias, hub id or local folder (default {DEFAULT_CLIP})",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--templates",
        default="ensemble",
        choices=sorted(TEMPLATE_SETS),
        help="prompt templates (default: ensemble)",
    )
    p.add_argument(
        "--cache-dir", default=None, help="text-embedding cache folder (default ~/.cache/ovdet)"
    )
    p.add_argument(
        "--no-cache", action="store_true", help="do not read or write the text-embedding cache"
    )


def add_vocab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vocab",
        required=True,
        help='class names: "cat, traffic cone|cone", a .txt/.json file, or "coco"',
    )
    p.add_argument(
        "--attributes", default=None, help='attribute words to expand with: "red, green"'
    )


def load_clip(args: argparse.Namespace) -> VisionLanguageModel:
    return load_model(args.clip, device=args.device)


def text_embedder(args: argparse.Namespace, clip: VisionLanguageModel) -> TextEmbedder:
    cache_dir = None if args.cache_dir is None else f"{args.cache_dir}/text"
    return TextEmbedder(
        clip, args.templates, None if args.no_cache else TextEmbeddingCache(cache_dir)
    )


def load_clip_and_text(
    args: argparse.Namespace,
) -> tuple[VisionLanguageModel, Vocabulary, TextEmbedder]:
    """Parse --vocab first (bad input fails before any model loads), then load CLIP."""
    vocab = parse_vocabulary(args.vocab, args.attributes)
    clip = load_clip(args)
    return clip, vocab, text_embedder(args, clip)
