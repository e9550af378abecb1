"""`ovdet eval` (score a results file) and `ovdet eval-regions` (recognise GT boxes, then score)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ovdet.cli.common import (
    add_dense_size,
    add_model_args,
    add_protocol_options,
    load_clip,
    text_embedder,
)
from ovdet.cli.options import positive_int

if TYPE_CHECKING:
    from ovdet.eval.detection import EvalResult


def _add_protocol_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", required=True, help="COCO or LVIS ground-truth JSON")
    add_protocol_options(p)
    p.add_argument("--out", default=None, help="folder for metrics.json and eval.png")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a COCO results file (COCO / LVIS protocols, base/novel)")
    _add_protocol_args(p)
    p.add_argument("--dt", required=True, help="COCO results JSON (detections or proposals)")
    p.add_argument("--recall", action="store_true", help="also class-agnostic AR@100/300/1000")
    p.set_defaults(run=run_eval)

    p = sub.add_parser(
        "eval-regions", help="recognise ground-truth boxes (CLIP, RegionSpot, ViLD) and score them"
    )
    _add_protocol_args(p)
    p.add_argument("--images", required=True, help="folder the ground truth's file_names are in")
    p.add_argument(
        "--model",
        default=None,
        help="a trained recognizer: RegionSpot or ViLD checkpoint (folder or bundled name); "
        "default: CLIP itself (--clip, --method)",
    )
    p.add_argument("--method", choices=("crop", "dense"), default="dense")
    add_dense_size(p)
    p.add_argument(
        "--labels-per-box",
        type=positive_int,
        default=None,
        help="labels kept per box (default: all; the protocol's budget keeps the best)",
    )
    add_model_args(p)
    p.set_defaults(run=run_eval_regions)


def refuse_report_over(folder: str | Path | None, *inputs: str | None) -> None:
    """`report`'s metrics.json and eval.png in `folder` must not replace an input file."""
    if folder:
        from ovdet.io.atomic import refuse_overwriting

        out = Path(folder)
        refuse_overwriting([out / "metrics.json", out / "eval.png"], inputs)


def report(result: EvalResult, folder: str | Path | None, extra: dict | None = None) -> None:
    """Print the metrics table; with a folder, write metrics.json and eval.png into it."""
    from rich.console import Console

    from ovdet.eval.report import metrics_table, save_plots
    from ovdet.io.atomic import write_json

    console = Console()
    console.print(metrics_table(result))
    if extra:
        console.print("  ".join(f"{k} {v:.1f}" for k, v in extra.items()))
    if folder:
        out = Path(folder)
        write_json(
            out / "metrics.json",
            {**result.to_json(), **({"recall": extra} if extra else {})},
            indent=1,
        )
        save_plots(result, out / "eval.png")
        console.print(f"wrote {out / 'metrics.json'} and {out / 'eval.png'}")


def run_eval(args: argparse.Namespace) -> int:
    from ovdet.eval.data import load_gt, make_split
    from ovdet.eval.detection import evaluate_detections
    from ovdet.eval.recall import proposal_recall

    refuse_report_over(args.out, args.gt, args.dt)
    gt = load_gt(args.gt)
    split = make_split(args.split, gt)
    result = evaluate_detections(gt, args.dt, args.iou_type, args.protocol, split)
    recall = proposal_recall(gt, args.dt, split=split) if args.recall else None
    report(result, args.out, recall)
    return 0


def run_eval_regions(args: argparse.Namespace) -> int:
    from ovdet.eval.data import load_gt, make_split
    from ovdet.eval.detection import evaluate_detections
    from ovdet.eval.recognition import clip_box_scorer, recognize_dataset
    from ovdet.vocab.parse import vocabulary_from_categories

    refuse_report_over(args.out, args.gt)
    gt = load_gt(args.gt)
    split = make_split(args.split, gt)
    vocab = vocabulary_from_categories(gt["categories"], args.gt)
    if args.model is not None:
        score = _model_scorer(args, vocab)
    else:
        clip = load_clip(args)
        text = text_embedder(args, clip).embed(vocab)
        score = clip_box_scorer(clip, text, args.method, args.dense_size)
    dets = recognize_dataset(gt, args.images, score, args.labels_per_box)
    report(evaluate_detections(gt, dets, "bbox", args.protocol, split), args.out)
    return 0


def _model_scorer(args: argparse.Namespace, vocab):
    """`score(image, (N, 4) boxes) -> (N, C)` of a trained recognizer (its `recognize_regions`)."""
    from ovdet.api import checkpoint_kind, load
    from ovdet.cli.common import text_cache
    from ovdet.errors import OvdetError
    from ovdet.types import Regions

    kind = checkpoint_kind(args.model)
    if kind not in ("vild", "regionspot"):
        raise OvdetError(
            f"--model {args.model} is a {kind} model; --model takes a RegionSpot "
            "or ViLD checkpoint (CLIP itself: --clip)"
        )
    model = load(args.model, device=args.device, text_cache=text_cache(args))

    def score(image, xyxy):
        regions = Regions(xyxy, tuple(image.shape[-2:]))
        return model.recognize_regions(image, regions, vocab).data["class_scores"]

    return score
