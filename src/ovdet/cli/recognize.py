"""`ovdet recognize IMAGE --boxes boxes.json --vocab ...`: name given regions (crop or dense)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ovdet.cli.common import (
    add_dense_size,
    add_model_args,
    add_vocab_args,
)
from ovdet.errors import OvdetError

if TYPE_CHECKING:
    from ovdet.types import Regions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recognize", help="name the regions given by boxes (or points)")
    p.add_argument("image", help="image file")
    prompts = p.add_mutually_exclusive_group(required=True)
    prompts.add_argument(
        "--boxes",
        help='boxes "x1,y1,x2,y2; x1,y1,x2,y2" in image pixels, or a JSON file: COCO results '
        'list, COCO dataset, {"xyxy": [[x1, y1, x2, y2], ...]} or that list',
    )
    prompts.add_argument(
        "--points",
        help='point prompts "x,y; x,y", or a file of them (JSON [[x, y], ...] or text): one '
        "named mask per point, with an Open-Vocabulary SAM --model or with --sam (its masks "
        "named by --clip, or by --model's heads)",
    )
    add_vocab_args(p)
    add_model_args(p)
    p.add_argument(
        "--method",
        choices=("crop", "dense"),
        default="crop",
        help="crop: CLIP on 1x+1.5x crops (accurate); dense: one pass + RoIAlign (fast)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="a RegionSpot checkpoint (from `ovdet train regionspot`, or shapes-regionspot) or an "
        "Open-Vocabulary SAM (`ovdet train clip2sam`): adds masks; or a ViLD checkpoint "
        "(its RoI heads name the boxes). --clip and --method are then the checkpoint's",
    )
    p.add_argument(
        "--sam",
        default=None,
        help="with --points: a SAM (alias, hub id or folder) segments, --clip (or a ViLD or "
        "RegionSpot --model) names each mask's box",
    )
    add_dense_size(p)
    p.add_argument(
        "--query",
        default=None,
        help='free-text re-query of the regions, comma separated: "red umbrella, blue umbrella"',
    )
    p.add_argument(
        "--out", default="out", help="folder for <image>.json and <image>.png (default out/)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ovdet.io.atomic import refuse_overwriting, write_json
    from ovdet.io.coco import regions_to_coco
    from ovdet.io.images import load_image
    from ovdet.ops.boxes import validate_input_boxes
    from ovdet.recognize.core import relabel_with_attributes
    from ovdet.types import Regions
    from ovdet.viz import draw_regions, encode_png, write_bytes
    from ovdet.vocab.parse import parse_vocabulary

    out, stem = Path(args.out), Path(args.image).stem
    refuse_overwriting(
        [out / f"{stem}.png", out / f"{stem}.json"],
        [args.image, args.boxes, args.vocab, args.attributes],
    )
    image = load_image(args.image)
    size = tuple(image.shape[-2:])
    vocab = parse_vocabulary(args.vocab, args.attributes)
    queries = _queries(args.query)
    if args.points is not None:
        from ovdet.api import checkpoint_kind

        xy = _points(args.points, size)
        own = args.model is not None and checkpoint_kind(args.model) == "ovsam"  # before loads
        if own and args.sam:
            raise OvdetError(
                "--sam goes with --points and a CLIP or another --model; an Open-Vocabulary "
                "SAM --model segments with its own decoder"
            )
        if not own and not args.sam:
            raise OvdetError(
                "--points needs a SAM: an Open-Vocabulary SAM --model (ovdet train clip2sam, or "
                "shapes-ovsam), or --sam sam-b to segment and --clip to name the masks"
            )
        recognizer = _recognizer(args)
        if own:
            regions = recognizer.segment_points(image, xy, vocab)
        else:
            from ovdet.models.sam import SamBackend
            from ovdet.recognize.points import segment_points

            sam = SamBackend.from_pretrained(args.sam, device=args.device)
            regions = segment_points(sam, recognizer, image, xy, vocab)
    else:
        boxes = validate_input_boxes(_boxes(args.boxes, args.image), size)
        recognizer = _recognizer(args)
        regions = recognizer.recognize_regions(image, Regions(boxes, size), vocab)
    clip, embedder = recognizer.clip, recognizer.text
    names = list(vocab.names)
    if vocab.attributes:
        attribute_text = embedder.embed_attributes(vocab)
        regions, names = relabel_with_attributes(regions, attribute_text, vocab, clip.logit_scale)
    entries = regions_to_coco(regions, image_id=Path(args.image).as_posix())
    for e in entries:
        e["category_name"] = names[e["category_id"] - 1]
    picture = encode_png(draw_regions(image, regions, names))  # drawn before anything is written
    _print(regions, names, queries, args, embedder, clip.logit_scale)
    write_bytes(out / f"{stem}.png", picture)
    write_json(out / f"{stem}.json", entries, indent=1)  # the JSON last: it marks a finished run
    Console().print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.png'}")
    return 0


def _recognizer(args: argparse.Namespace):
    """The `Recognizer` the options ask for: a RegionSpot, OV-SAM or ViLD checkpoint (--model; a
    ViLD detector names given boxes with its RoI heads), else CLIP."""
    from ovdet.cli.common import load_clip, text_cache

    if args.model is not None:
        from ovdet.api import checkpoint_kind, load
        from ovdet.errors import OvdetError

        kind = checkpoint_kind(args.model)
        if kind not in ("regionspot", "ovsam", "vild"):
            raise OvdetError(
                f"--model {args.model} is a {kind} model; recognize takes a RegionSpot, "
                "Open-Vocabulary SAM or ViLD checkpoint (CLIP itself: --clip)"
            )
        model = load(args.model, device=args.device, text_cache=text_cache(args))
        args.clip, args.method = model.clip.name, kind
        return model
    from ovdet.recognize.clip_recognizer import ClipRecognizer

    return ClipRecognizer(
        load_clip(args), args.method, args.templates, text_cache(args), args.dense_size
    )


def _boxes(text: str, image: str):
    """--boxes given inline ("x1,y1,x2,y2; ...") or as a JSON file -> (N, 4) xyxy."""
    from ovdet.io.coco import is_file, read_boxes
    from ovdet.io.prompts import looks_inline, parse_boxes

    if not is_file(text) and looks_inline(text):
        return parse_boxes(text)
    return read_boxes(text, image_name=image)


def _points(text: str, size: tuple[int, int]):
    """--points given inline ("x,y; x,y") or as a file of them -> (N, 2) points inside the
    image."""
    from pathlib import Path

    from ovdet.io.coco import is_file
    from ovdet.io.prompts import check_points, looks_inline, parse_points

    if is_file(text):
        text = Path(text).read_text()
    elif not looks_inline(text) and Path(text).suffix:
        raise OvdetError(f"points file not found: {text}")
    return check_points(parse_points(text), size)


def _queries(text: str | None) -> list[str]:
    """--query's comma-separated phrases ([] when not given); given with none is refused."""
    if text is None:
        return []
    queries = [q.strip() for q in text.split(",") if q.strip()]
    if not queries:
        raise OvdetError(f"--query names no phrase: {text!r}")
    return queries


def _print(
    regions: Regions,
    names: list[str],
    queries: list[str],
    args: argparse.Namespace,
    embedder,
    logit_scale,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from ovdet.recognize.core import class_probabilities

    table = Table(title=f"{args.image}: {len(regions)} regions ({args.method})")
    for col in ("#", "box (xyxy)", "label", "score"):
        table.add_column(col)
    if queries:
        q_emb = embedder.embed_groups([(q,) for q in queries])
        cos = regions.embeddings @ q_emb.t()
        q_prob = class_probabilities(regions.embeddings, q_emb, logit_scale)
        for q in queries:
            table.add_column(f"{q!r} p (cos)")
    for i in range(len(regions)):
        row = [
            str(i),
            " ".join(f"{v:.0f}" for v in regions.xyxy[i].tolist()),
            names[int(regions.labels[i])],
            f"{float(regions.scores[i]):.3f}",
        ]
        if queries:
            row += [
                f"{float(q_prob[i, j]):.2f} ({float(cos[i, j]):.3f})" for j in range(len(queries))
            ]
        table.add_row(*row)
    Console().print(table)
