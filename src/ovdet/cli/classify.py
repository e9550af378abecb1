"""`ovdet classify IMAGE... --vocab ...`: CLIP zero-shot classification with top-k probabilities."""

from __future__ import annotations

import argparse

from ovdet.cli.common import add_model_args, add_vocab_args, load_clip_and_text
from ovdet.cli.options import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="zero-shot classification of whole images")
    p.add_argument("images", nargs="+", help="image files")
    add_vocab_args(p, attributes=False)
    add_model_args(p)
    p.add_argument(
        "--top-k", type=positive_int, default=5, help="labels to show per image (default 5)"
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ovdet.io.atomic import write_json
    from ovdet.io.images import load_image
    from ovdet.recognize.core import classify_images

    images = [load_image(path) for path in args.images]
    clip, vocab, embedder = load_clip_and_text(args)
    probs = classify_images(clip, images, embedder.embed(vocab))
    k = min(args.top_k, len(vocab))
    results, console = [], Console()
    for path, p in zip(args.images, probs, strict=True):
        top = p.topk(k)
        rows = [
            {"name": vocab.names[i], "probability": round(float(s), 5)}
            for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]
        results.append({"image": path, "top": rows})
        console.print(path, soft_wrap=True, highlight=False)  # a long path stays one line
        table = Table()
        table.add_column("label")
        table.add_column("probability", justify="right")
        for row in rows:
            table.add_row(row["name"], f"{row['probability']:.3f}")
        console.print(table)
    if args.json:
        write_json(args.json, results, indent=2)
    return 0
