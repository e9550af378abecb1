"""`ovdet cache --gt ... --images ... --sam ... --clip ... --out DIR`: RegionSpot features."""

from __future__ import annotations

import argparse

from rich.console import Console

from ovdet.cli.common import add_engine_args
from ovdet.cli.options import device, positive_int
from ovdet.eval.data import load_gt


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache", help="cache SAM tokens and CLIP maps of a COCO-format set (for RegionSpot)"
    )
    p.add_argument("--gt", required=True, help="COCO-format annotations (boxes and categories)")
    p.add_argument("--images", required=True, help="folder of the images")
    p.add_argument(
        "--sam", default="sam-b", help="SAM alias, hub id, folder or shapes-sam (default sam-b)"
    )
    p.add_argument(
        "--clip",
        default="clip-b16",
        help="CLIP alias, hub id, folder or shapes-clip (default clip-b16)",
    )
    p.add_argument(
        "--clip-size",
        type=positive_int,
        default=None,
        help="CLIP input side, a multiple of its patch (default: the model's dense size)",
    )
    p.add_argument("--out", required=True, help="cache folder (an interrupted run resumes)")
    p.add_argument("--shard-size", type=positive_int, default=256, help="images per shard")
    p.add_argument("--device", type=device, default="cpu")
    add_engine_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ovdet.methods.regionspot.recognizer import FeatureExtractor
    from ovdet.methods.regionspot.train import build_cache, check_cache_models
    from ovdet.models.loader import load_model
    from ovdet.models.sam import SamBackend

    gt = load_gt(args.gt)
    from ovdet.models.registry import stored_name

    names = {"sam": stored_name(args.sam), "clip": stored_name(args.clip)}
    check_cache_models(args.out, names)  # before loading models
    extractor, setup = None, None
    if args.engine == "ray":  # SAM and CLIP are loaded in each actor
        from functools import partial

        from ovdet.methods.regionspot.recognizer import make_extractor

        setup = partial(make_extractor, args.sam, args.clip, args.clip_size, args.device)
    else:
        sam = SamBackend.from_pretrained(args.sam, device=args.device)
        clip = load_model(args.clip, device=args.device)
        extractor = FeatureExtractor(sam, clip, args.clip_size)
    cache = build_cache(
        gt,
        args.images,
        args.out,
        extractor,
        names,
        shard_size=args.shard_size,
        ray_setup=setup,
        actors=args.actors,
    )
    Console().print(f"cached {len(cache.done())} images in {args.out}")
    return 0
