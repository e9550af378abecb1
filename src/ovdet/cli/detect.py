"""`ovdet detect IMAGE --model CHECKPOINT --vocab ...`: open-vocabulary detection with ViLD."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from ovdet.io.atomic import write_json
from ovdet.io.coco import regions_to_coco
from ovdet.io.images import load_image
from ovdet.models.loader import load_model
from ovdet.viz import draw_regions, save_png
from ovdet.vocab.embed import TextEmbedder
from ovdet.vocab.parse import parse_vocabulary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect any vocabulary with a trained ViLD checkpoint")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="ViLD checkpoint folder (from ovdet train vild)")
    p.add_argument(
        "--vocab", required=True, help='class names: "cat, traffic cone", a file, or "coco"'
    )
    p.add_argument(
        "--min-score", type=float, default=0.3, help="drawn and printed above this score"
    )
    p.add_argument("--out", default="out", help="folder for <image>.json and <image>.png")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ovdet.train.vild import detect_image, load_detector

    vocab = parse_vocabulary(args.vocab)
    images = [load_image(p) for p in args.images]
    model, spec = load_detector(args.model)
    clip = load_model(spec["clip"])
    text = TextEmbedder(clip, spec["templates"]).embed(vocab)
    base = {n.lower() for n in spec["base_names"]}
    novel = torch.tensor([n.lower() not in base for n in vocab.names])
    console, out = Console(), Path(args.out)
    for path, image in zip(args.images, images, strict=True):
        regions = detect_image(model, spec, image, text, novel)
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
