"""`ovdet index build` and `ovdet index search`: find regions by words across a collection.

ovdet index build --images photos/ --out index/ --clip clip-b16 --proposals sam
ovdet index search index/ "red umbrella" --top-k 50 --out found/
ovdet index search index/ --like photo.jpg --box 10,20,200,240 --out found/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ovdet.cli.common import (
    DEFAULT_CLIP,
    add_cache_args,
    add_dense_size,
    add_device_arg,
    add_engine_args,
    add_everything_args,
)
from ovdet.cli.options import positive_int
from ovdet.errors import OvdetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="region search over an image collection (faiss)")
    actions = p.add_subparsers(dest="action", required=True)

    b = actions.add_parser("build", help="index (or add to) a collection's regions")
    b.add_argument("--images", required=True, help="a folder (recursively) or a glob")
    b.add_argument("--out", required=True, help="the index folder (created, or added to)")
    b.add_argument("--clip", default=DEFAULT_CLIP, help=f"CLIP of the embeddings ({DEFAULT_CLIP})")
    b.add_argument(
        "--model",
        default=None,
        help="a RegionSpot checkpoint: its fused SAM + CLIP embeddings instead of dense CLIP "
        "regions (its own SAM and CLIP; --clip is then not used)",
    )
    b.add_argument(
        "--proposals",
        default="sam",
        help='"sam" (SAM everything mode) or a ViLD checkpoint (its detections, any class)',
    )
    b.add_argument("--sam", default="sam-b", help="SAM for --proposals sam (alias, hub id, folder)")
    add_everything_args(b, points_per_side=16)
    b.add_argument("--shard-size", type=positive_int, default=64, help="images per resume unit")
    add_engine_args(b)
    add_dense_size(b)
    add_device_arg(b)
    b.set_defaults(run=run_build)

    s = actions.add_parser("search", help="the regions that best match words or an example")
    s.add_argument("index", help="the index folder")
    s.add_argument("query", nargs="?", default=None, help='words: "red umbrella" (commas: several)')
    s.add_argument("--like", default=None, help="query by example: an image file (with --box)")
    s.add_argument("--box", default=None, help="x1,y1,x2,y2 of the example region in --like")
    s.add_argument("--top-k", type=positive_int, default=20)
    s.add_argument(
        "--templates",
        default="ensemble",
        help="prompt templates of word queries (a RegionSpot index uses its checkpoint's)",
    )
    s.add_argument("--out", default=None, help="folder for results.json and contact sheets")
    add_device_arg(s)
    add_cache_args(s)
    s.set_defaults(run=run_search)


def run_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ovdet.data.image_list import find_images
    from ovdet.index import RegionIndex
    from ovdet.index.regions import ProposalConfig, RegionSource
    from ovdet.models.loader import load_model

    images = find_images(args.images)
    index = RegionIndex(args.out)
    spot, clip_name = None, args.clip
    if args.model is not None:
        spot = _regionspot(args.model, args.device)
        clip_name, clip = spot.spec["clip"], spot.clip
        if args.proposals == "sam":
            args.sam = spot.spec["sam"]  # its own SAM proposes (one image embedding for both)
    else:
        clip = load_model(args.clip, device=args.device)
    config = ProposalConfig(
        args.proposals, args.sam, args.points_per_side, args.sam_iou, args.sam_stability
    )
    extra = {"templates": spot.spec["templates"]} if spot is not None else {}
    if args.engine == "ray":  # the proposer and the embedder are built in each actor
        from functools import partial

        from ovdet.index.regions import make_source, region_signature
        from ovdet.recognize.dense import DenseEmbedder

        setup = partial(make_source, clip_name, config, args.device, args.dense_size, args.model)
        size = DenseEmbedder(clip, args.dense_size).input_size
        signature = region_signature(config, size, args.model)
        counts = index.build(
            images,
            None,
            clip_name,
            clip,
            args.shard_size,
            ray_setup=setup,
            actors=args.actors,
            signature={**signature, **extra},
        )
    else:
        source = RegionSource(clip, config, args.device, args.dense_size, spot)
        signature = {**source.signature(), **extra}
        counts = index.build(images, source, clip_name, clip, args.shard_size, signature=signature)
    Console().print(
        f"{args.out}: {counts['images']} images, {counts['regions']} regions "
        f"({counts['added']} images added, {counts['skipped']} unreadable)"
    )
    return 0


def _regionspot(model: str, device: str):
    """The RegionSpot checkpoint `--model` names, or a one-line error for another kind."""
    from ovdet.api import checkpoint_kind, load

    kind = checkpoint_kind(model)
    if kind != "regionspot":
        raise OvdetError(f"--model takes a RegionSpot checkpoint, got a {kind} model: {model}")
    return load(model, device=device)


def run_search(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ovdet.cli.common import text_cache
    from ovdet.index import RegionIndex
    from ovdet.models.loader import load_model

    if (args.query is None) == (args.like is None):
        raise OvdetError(
            'give words ("red umbrella") or --like IMAGE --box x1,y1,x2,y2, one of them'
        )
    index = RegionIndex(args.index)
    if index.meta is None:
        raise OvdetError(f"{args.index} is not a region index (build one: ovdet index build)")
    clip = load_model(index.meta["clip"], device=args.device)
    index.check_model(clip)
    names, queries = _queries(args, clip, index, text_cache(args))
    results = index.search(queries, args.top_k)
    console = Console()
    for name, hits in zip(names, results, strict=True):
        table = Table(title=f"{name!r}: top {len(hits)}")
        for col in ("rank", "score", "image", "box (xyxy)"):
            table.add_column(col)
        for rank, h in enumerate(hits[:10], 1):
            box = " ".join(f"{v:.0f}" for v in h.box)
            table.add_row(str(rank), f"{h.score:.3f}", h.image, box)
        console.print(table)
    if args.out:
        _write(Path(args.out), names, results)
        console.print(f"wrote {Path(args.out) / 'results.json'} and contact sheets")
    return 0


def _queries(args: argparse.Namespace, clip, index, cache):
    """(names, (Q, D) query embeddings) from words or from an example region."""
    import torch

    if args.like is None:
        from ovdet.vocab.embed import TextEmbedder
        from ovdet.vocab.parse import parse_vocabulary

        vocab = parse_vocabulary(args.query)
        templates = index.meta.get("templates") or args.templates  # RegionSpot's own prompts
        return list(vocab.names), TextEmbedder(clip, templates, cache).embed(vocab)
    from ovdet.io.images import load_image
    from ovdet.ops.boxes import validate_input_boxes
    from ovdet.recognize.dense import DenseEmbedder

    if args.box is None:
        raise OvdetError("--like needs --box x1,y1,x2,y2 (the example region)")
    try:
        box = torch.tensor([[float(v) for v in args.box.split(",")]])
    except ValueError:
        raise OvdetError(f"--box must be four numbers x1,y1,x2,y2, got {args.box!r}") from None
    image = load_image(args.like)
    box = validate_input_boxes(box, tuple(image.shape[-2:]))
    name = [f"like {Path(args.like).name} {args.box}"]
    if index.meta.get("regionspot"):
        return name, _regionspot(index.meta["regionspot"], args.device).embed(image, box)[0]
    return name, DenseEmbedder(clip, index.meta["dense_size"]).embed(image, box)


def _write(out: Path, names: list[str], results) -> None:
    from ovdet.io.atomic import write_json
    from ovdet.viz import contact_sheet, save_png

    write_json(
        out / "results.json",
        [
            {"query": n, "hits": [h.to_json() for h in hits]}
            for n, hits in zip(names, results, strict=True)
        ],
        indent=1,
    )
    for i, (name, hits) in enumerate(zip(names, results, strict=True)):
        save_png(contact_sheet(hits, name), out / f"contact_{i:02d}.png")
