"""Arguments and set-up shared by the subcommands (heavy modules are imported when used)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from ovdet.cli.options import device, positive_int
from ovdet.vocab.prompts import TEMPLATE_SETS

DEFAULT_CLIP = "clip-b16"


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device, default="cpu", help="torch device: cpu, cuda, cuda:N")


def add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir", default=None, help="text-embedding cache folder (default ~/.cache/ovdet)"
    )
    p.add_argument(
        "--no-cache", action="store_true", help="do not read or write the text-embedding cache"
    )


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clip",
        default=DEFAULT_CLIP,
        help=f"CLIP alias, hub id or local folder (default {DEFAULT_CLIP})",
    )
    add_device_arg(p)
    p.add_argument(
        "--templates",
        default="ensemble",
        choices=sorted(TEMPLATE_SETS),
        help="prompt templates (default: ensemble)",
    )
    add_cache_args(p)


def add_vocab_args(p: argparse.ArgumentParser, attributes: bool = True) -> None:
    p.add_argument(
        "--vocab",
        required=True,
        help='class names: "cat, traffic cone|cone", a .txt/.json file, or "coco"',
    )
    if attributes:
        p.add_argument(
            "--attributes", default=None, help='attribute words to expand with: "red, green"'
        )


def add_dense_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dense-size",
        type=positive_int,
        default=None,
        help="input side of the dense pass, a multiple of the patch size "
        "(default: the model's dense size: CLIP's input side, 128 for shapes-clip)",
    )


def add_novel_arg(p: Any) -> None:
    """--novel: the categories a trainer holds out."""
    p.add_argument(
        "--novel",
        default=None,
        help='novel categories to hold out: names/ids, "lvis" (rare) or "coco-ovd"; '
        "default: the file's 'ovd' field, else every category is base",
    )


def add_everything_args(p: Any, points_per_side: int = 32) -> None:
    """--points-per-side, --sam-iou and --sam-stability: SAM's everything mode (proposals)."""
    from ovdet.cli.options import positive_int, unit_float

    p.add_argument(
        "--points-per-side",
        type=positive_int,
        default=points_per_side,
        help=f"SAM everything mode: the point grid's side (default {points_per_side})",
    )
    p.add_argument(
        "--sam-iou", type=unit_float, default=0.88, help="SAM everything mode: predicted-IoU cut"
    )
    p.add_argument(
        "--sam-stability", type=unit_float, default=0.95, help="SAM everything mode: stability cut"
    )


def everything_config(args: Any) -> Any:
    """The `EverythingConfig` the options of `add_everything_args` ask for."""
    from ovdet.models.sam_everything import EverythingConfig

    return EverythingConfig(
        points_per_side=args.points_per_side,
        iou_threshold=args.sam_iou,
        stability_threshold=args.sam_stability,
    )


def add_pass_args(p: Any) -> None:
    """--batch-size, --shard-size, --workers, --engine and --actors: a dataset-level detection
    pass (`ovdet.runner`)."""
    from ovdet.cli.options import nonnegative_int, positive_int

    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")
    p.add_argument("--shard-size", type=positive_int, default=256, help="images per resume unit")
    p.add_argument("--workers", type=nonnegative_int, default=2, help="image-decoding threads")
    add_engine_args(p)


def add_engine_args(p: Any) -> None:
    """--engine local|ray and --actors: where a heavy per-image pass runs."""
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: a pool of Ray actors (RAY_ADDRESS picks a cluster; needs ovdet[ray])",
    )
    p.add_argument("--actors", type=positive_int, default=2, help="Ray actors (--engine ray)")


def add_protocol_options(p: Any) -> None:
    """--iou-type, --protocol and --split: how a results file is scored."""
    p.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    p.add_argument(
        "--protocol",
        choices=("coco", "lvis"),
        default="coco",
        help="lvis: 300 detections per image, federated matching, AP r/c/f",
    )
    p.add_argument(
        "--split",
        default=None,
        help='base/novel split: "coco-ovd", "lvis" (novel = rare), or novel names/ids',
    )


def load_clip(args: argparse.Namespace) -> Any:
    from ovdet.models.loader import load_model

    return load_model(args.clip, device=args.device)


def text_cache(args: argparse.Namespace) -> Any:
    """The text-embedding cache `--cache-dir` / `--no-cache` ask for (None: no cache)."""
    from ovdet.vocab.cache import TextEmbeddingCache

    if args.no_cache:
        return None
    return TextEmbeddingCache(None if args.cache_dir is None else f"{args.cache_dir}/text")


def text_embedder(args: argparse.Namespace, clip: Any) -> Any:
    from ovdet.vocab.embed import TextEmbedder

    return TextEmbedder(clip, args.templates, text_cache(args))


def load_clip_and_text(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Parse --vocab first (bad input fails before any model loads), then load CLIP."""
    from ovdet.vocab.parse import parse_vocabulary

    vocab = parse_vocabulary(args.vocab, getattr(args, "attributes", None))
    clip = load_clip(args)
    return clip, vocab, text_embedder(args, clip)


def output_names(paths: list[str]) -> list[str]:
    """A distinct output name per input image: its stem; its file name where stems repeat
    (a.png, a.jpg); its path with folders joined by "__" where file names repeat too."""
    stems = Counter(Path(p).stem for p in paths)
    names = Counter(Path(p).name for p in paths)
    out = []
    for p in paths:
        path = Path(p)
        if stems[path.stem] == 1:
            out.append(path.stem)
        elif names[path.name] == 1:
            out.append(path.name)
        else:
            out.append("__".join(part for part in path.parts if part not in ("/", "..", ".")))
    if len(set(out)) != len(out):
        dup = next(n for n, c in Counter(out).items() if c > 1)
        from ovdet.errors import OvdetError

        raise OvdetError(f"the image {dup!r} is given twice")
    return out
