"""`ovdet detect IMAGE --model CHECKPOINT --vocab ...`: open-vocabulary detection.

A ViLD checkpoint detects with its own RPN. A RegionSpot checkpoint names proposals from any
source: SAM's everything mode (default), a COCO results JSON of another detector (entries whose
image_id is the image's file name or stem), or a COCO dataset's ground-truth boxes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from ovdet.errors import OvdetError
from ovdet.io.atomic import write_json
from ovdet.io.coco import read_boxes, regions_to_coco
from ovdet.io.images import load_image
from ovdet.models.loader import load_model
from ovdet.ops.boxes import validate_input_boxes
from ovdet.recognize.regionspot import is_regionspot
from ovdet.types import Regions, Vocabulary
from ovdet.viz import draw_regions, save_png
from ovdet.vocab.embed import TextEmbedder
from ovdet.vocab.parse import parse_vocabulary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect any vocabulary (ViLD or RegionSpot checkpoint)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--model",
        required=True,
        help="ViLD or RegionSpot checkpoint folder (ovdet train vild/regionspot), "
        "or shapes-vild / shapes-regionspot",
    )
    p.add_argument(
        "--proposals",
        default="sam",
        help='RegionSpot only: "sam" (SAM everything mode), or a JSON of boxes: COCO results '
        "of another detector or a COCO dataset (ground truth)",
    )
    p.add_argument("--points-per-side", type=int, default=32, help="SAM everything-mode grid")
    p.add_argument(
        "--vocab", required=True, help='class names: "cat, traffic cone", a file, or "coco"'
    )
    p.add_argument(
        "--min-score", type=float, default=0.3, help="drawn and printed above this score"
    )
    p.add_argument("--out", default="out", help="folder for <image>.json and <image>.png")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    vocab = parse_vocabulary(args.vocab)
    images = [load_image(p) for p in args.images]
    detect, base_names = _detector(args, vocab)
    base = {n.lower() for n in base_names}
    novel = torch.tensor([n.lower() not in base for n in vocab.names])
    console, out = Console(), Path(args.out)
    for path, image in zip(args.images, images, strict=True):
        regions = detect(path, image, novel)
        stem = Path(path).stem
        entries = regions_to_coco(regions, image_id=stem)
        for e in entries:
            e["category_name"] = vocab.names[e["category_id"] - 1]
        write_json(out / f"{stem}.json", entries, indent=1)
        shown = regions[regions.scores >= args.min_score]
        save_png(draw_regions(image, shown, list(vocab.names)), out / f"{stem}.png")
        table = Table(
            title=f"{path}: {len(shown)} of {len(regions)} detections >= {args.min_score}"
        )
        for col in ("label", "score", "box (xyxy)", "novel?"):
            table.add_column(col)
        for i in range(len(shown)):
            label = int(shown.labels[i])
            table.add_row(
                vocab.names[label],
                f"{float(shown.scores[i]):.2f}",
                " ".join(f"{v:.0f}" for v in shown.xyxy[i].tolist()),
                "novel" if novel[label] else "",
            )
        console.print(table)
    return 0


def _detector(args: argparse.Namespace, vocab: Vocabulary) -> tuple[Callable, list[str]]:
    """(detect(path, image, novel) -> Regions, base names) for the checkpoint's kind."""
    if is_regionspot(args.model):
        from ovdet.models.sam_everything import EverythingConfig
        from ovdet.recognize.regionspot import RegionSpotRecognizer

        spot = RegionSpotRecognizer(args.model)
        text = spot.text_embeddings(vocab)
        grid = EverythingConfig(points_per_side=args.points_per_side)

        def detect(path: str, image: torch.Tensor, novel: torch.Tensor) -> Regions:
            boxes = None
            if args.proposals != "sam":
                raw = read_boxes(args.proposals, image_name=path)
                boxes = validate_input_boxes(raw, tuple(image.shape[-2:]))
            return spot.detect(image, text, boxes, everything=grid)

        return detect, spot.spec["base_names"]
    if args.proposals != "sam":
        raise OvdetError("--proposals needs a RegionSpot --model; ViLD uses its own RPN")
    from ovdet.train.vild import detect_image, load_detector

    model, spec = load_detector(args.model)
    clip = load_model(spec["clip"])
    text = TextEmbedder(clip, spec["templates"]).embed(vocab)
    return (lambda path, image, novel: detect_image(model, spec, image, text, novel)), spec[
        "base_names"
    ]
