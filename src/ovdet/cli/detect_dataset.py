"""`ovdet detect --images DIR [--gt val.json] --out results.json [--eval]`: the dataset pass.

One COCO results file with the dataset's image ids (ready for `ovdet eval --gt`), streamed,
batched and resumable (`ovdet.runner`); pictures of the first `--draw` images; `--eval` scores
the file with the chosen protocol and writes metrics.json and eval.png beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ovdet.errors import OvdetError


def results_path(out: str) -> Path:
    """`--out`: a .json file is the results file; anything else a folder for detections.json."""
    path = Path(out)
    if path.suffix.lower() == ".json":
        return path
    if path.exists() and not path.is_dir():
        raise OvdetError(f"--out {out} is a file; give a folder or a .json path")
    return path / "detections.json"


def run_dataset(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ovdet.cli.detect import _detector, gt_category_ids
    from ovdet.data.image_list import find_images, gt_images
    from ovdet.runner import run_detection
    from ovdet.vocab.parse import parse_vocabulary

    if args.images:
        raise OvdetError("give image files or --images DIR, not both")
    if args.eval and args.gt is None:
        raise OvdetError("--eval needs --gt (the ground truth to score against)")
    vocab = parse_vocabulary(args.vocab)
    results = results_path(args.out)
    gt, split = None, None
    if args.gt is not None:
        from ovdet.eval.data import load_gt, make_split

        gt = load_gt(args.gt)
        images = gt_images(gt, args.dataset, args.gt)
        category_ids = gt_category_ids(gt, args.gt, vocab)
        split = make_split(args.split, gt) if args.eval else None
    else:
        images = find_images(args.dataset)
        category_ids = None
    _refuse_overwriting_inputs(args, results, images)
    if args.engine == "ray":
        from functools import partial

        plain = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "run"})
        detector = partial(_detector, plain, vocab)  # built once in each Ray actor
    else:
        detector = _detector(args, vocab)
    extra = None
    if args.proposals != "sam":
        extra = _proposal_boxes(args.proposals, images)

    signature = {
        "model": str(args.model),
        "proposals": args.proposals,
        "points_per_side": args.points_per_side,
        "sam_iou": args.sam_iou,
        "sam_stability": args.sam_stability,
    }
    summary = run_detection(
        detector,
        vocab,
        images,
        results,
        signature,
        category_ids,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        workers=args.workers,
        extra=extra,
        engine=args.engine,
        actors=args.actors,
        on_image=_painter(results.parent / "pictures", images, vocab, args.draw, args.min_score),
    )
    console = Console()
    console.print(
        f"wrote {results}: {summary.detections} detections on {summary.images} images "
        f"({summary.fresh} this run, {summary.images_per_second:.1f} img/s"
        + (
            f", model idle {summary.idle_share:.0%} waiting for images)"
            if args.engine == "local"
            else ")"
        )
    )
    if summary.skipped:
        from ovdet.io.atomic import write_json

        listed = results.with_name(results.stem + ".skipped.json")
        write_json(listed, [{"file": f, "reason": r} for f, r in summary.skipped], indent=1)
        console.print(f"skipped {len(summary.skipped)} unreadable images, listed in {listed}")
    if summary.images == 0:
        raise OvdetError(f"no image of {args.dataset} could be read")
    if args.eval:
        from ovdet.cli.evaluate import report
        from ovdet.eval.detection import evaluate_detections

        result = evaluate_detections(gt, str(results), args.iou_type, args.protocol, split)
        report(result, results.parent)
    return 0


def _refuse_overwriting_inputs(args: argparse.Namespace, results: Path, images) -> None:
    """The results file, its .skipped.json, metrics.json and eval.png must not replace the
    ground truth, the proposals or the vocabulary file, nor the pictures folder hold the images."""
    from ovdet.io.atomic import refuse_overwriting

    side = [results.with_name(results.stem + ".skipped.json")]
    if args.eval:
        side += [results.parent / "metrics.json", results.parent / "eval.png"]
    refuse_overwriting([results, *side], [args.gt, args.proposals, args.vocab])
    if args.draw > 0:
        pictures = (results.parent / "pictures").resolve()
        folders = {Path(p).parent: p for p in images.paths}  # one resolve per folder
        inside = next((p for f, p in folders.items() if f.resolve() == pictures), None)
        if inside is not None:
            raise OvdetError(
                f"--draw would write pictures into {pictures}, the folder of the input image "
                f"{inside}; choose another --out"
            )


def _proposal_boxes(source: str, images):
    """`extra(i, image)` giving image i the boxes of the --proposals file (read once). An image
    the file has no entry for gets no boxes; a file with entries for none of them is refused."""
    import torch

    from ovdet.io.coco import BoxesByImage
    from ovdet.ops.boxes import validate_input_boxes

    table = BoxesByImage(source)
    found = [table.boxes(images.ids[i], str(images.paths[i])) for i in range(len(images))]
    if all(b is None for b in found):
        raise OvdetError(f"--proposals {source} holds boxes of none of these images")

    def extra(i, image) -> dict:
        boxes = found[i] if found[i] is not None else torch.zeros(0, 4)
        return {"proposals": validate_input_boxes(boxes, tuple(image.shape[-2:]))}

    return extra


def _painter(folder: Path, images, vocab, count: int, min_score: float):
    """`on_image` callback: pictures of the first `count` images read, detections >= min_score."""
    if count == 0:
        return None
    drawn: list[int] = []

    def paint(i, image, regions) -> None:
        from ovdet.io.images import load_image
        from ovdet.viz import draw_regions, encode_png, write_bytes

        if len(drawn) >= count:
            return
        drawn.append(i)
        image = load_image(images.paths[i]) if image is None else image  # None: read by Ray
        shown = regions[regions.scores >= min_score]
        name = str(images.ids[i]).replace("/", "__")
        if not name.endswith(images.paths[i].name):
            name = f"{name}_{images.paths[i].stem}"
        picture = encode_png(draw_regions(image, shown, list(vocab.names)))
        write_bytes(folder / f"{Path(name).stem}.png", picture)

    return paint
