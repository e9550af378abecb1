"""`ovdet label DIR|GLOB --vocab ... --model M --out DATASET`: auto-label a folder into a
training-ready dataset (COCO and/or YOLO layout, a train/val split, a contact sheet to review).

The detection pass is `ovdet detect --images`' (streamed, batched, resumable, `--engine ray`);
its raw results stay in DATASET/detections.json, so other thresholds re-label without detecting
again. The labels are the detections kept by per-class score thresholds, class-agnostic NMS and
a cap per image (`ovdet.label.filters`), written by `ovdet.label.export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path, PurePosixPath

from ovdet.cli.common import add_cache_args, add_device_arg, add_everything_args, add_pass_args
from ovdet.cli.options import nonnegative_int, positive_int, unit_float
from ovdet.errors import OvdetError

FORMATS = {"coco": ("coco",), "yolo": ("yolo",), "both": ("coco", "yolo")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label", help="auto-label a folder into a training-ready COCO / YOLO dataset"
    )
    p.add_argument("images", help="a folder (searched recursively) or a glob")
    p.add_argument(
        "--vocab", required=True, help='class names: "cat, traffic cone", a file, or "coco"'
    )
    p.add_argument(
        "--model", required=True, help="ViLD or RegionSpot checkpoint, bundled name or .onnx export"
    )
    p.add_argument("--out", required=True, help="the dataset folder (resumes a killed run)")
    p.add_argument("--format", choices=sorted(FORMATS), default="coco")
    p.add_argument(
        "--val-share", type=unit_float, default=0.0, help="share of images in val (by file name)"
    )
    p.add_argument(
        "--min-score",
        default="0.3",
        help='a label\'s lowest score: "0.3", or per class "cat=0.5, cone=0.2" (with an '
        "optional bare default among them)",
    )
    p.add_argument(
        "--agnostic-nms",
        type=unit_float,
        default=0.0,
        help="IoU of class-agnostic NMS across names (synonyms naming one object); 0: off",
    )
    p.add_argument("--max-per-image", type=positive_int, default=100, help="labels per image")
    p.add_argument(
        "--empty",
        choices=("keep", "drop"),
        default="keep",
        help="images without labels: kept as negatives, or left out (listed in label.json)",
    )
    p.add_argument("--sheet", type=nonnegative_int, default=16, help="images on sheet.png")
    p.add_argument("--proposals", default="sam", help='RegionSpot only: "sam" or a JSON of boxes')
    add_everything_args(p)
    add_pass_args(p)
    add_device_arg(p)
    add_cache_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ovdet.cli.detect import _detector
    from ovdet.data.image_list import find_images
    from ovdet.label.filters import parse_min_score
    from ovdet.runner import run_detection
    from ovdet.vocab.parse import parse_vocabulary

    vocab = parse_vocabulary(args.vocab)
    thresholds = parse_min_score(args.min_score, vocab)  # before any model loads
    images = find_images(args.images)
    out = Path(args.out)
    _refuse_inside(out, args.images)
    if args.proposals != "sam":
        raise OvdetError("ovdet label takes --proposals sam (or a ViLD --model)")
    if args.engine == "ray":
        from functools import partial

        plain = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "run"})
        detector = partial(_detector, plain, vocab)
    else:
        detector = _detector(args, vocab)
    raw = out / "detections.json"
    signature = {"model": str(args.model), "points_per_side": args.points_per_side}
    signature |= {"sam_iou": args.sam_iou, "sam_stability": args.sam_stability}
    summary = run_detection(
        detector, vocab, images, raw, signature, batch_size=args.batch_size,
        shard_size=args.shard_size, workers=args.workers, engine=args.engine, actors=args.actors,
    )  # fmt: skip
    report = write_labels(args, out, images, raw, vocab, thresholds, summary.skipped)
    Console().print(
        f"labelled {report['images']} images in {out} ({report['labels']} labels; "
        f"{len(report['empty'])} without any, {args.empty}; train {report['splits']['train']}, "
        f"val {report['splits']['val']}); review {out / 'sheet.png'}"
    )
    return 0


def write_labels(args, out: Path, images, raw: Path, vocab, thresholds, skipped) -> dict:
    """Filter the raw detections into labels, write the dataset, sheet.png and label.json."""
    import json

    from ovdet.io.atomic import write_json
    from ovdet.io.images import image_size
    from ovdet.label.export import LabelledImage, split_of, write_dataset
    from ovdet.label.filters import keep_labels
    from ovdet.label.sheet import label_sheet
    from ovdet.viz import save_png

    by_image: dict[str, list] = {}
    for r in json.loads(raw.read_text()):
        by_image.setdefault(str(r["image_id"]), []).append(r)
    unread = {str(f) for f, _ in skipped}
    labelled, empty, keys = [], [], _keys(images)
    for image_id, path, key in zip(images.ids, images.paths, keys, strict=True):
        if str(path) in unread:
            continue
        kept = keep_labels(
            by_image.get(str(image_id), []), thresholds, args.agnostic_nms, args.max_per_image
        )
        if not kept:
            empty.append(key)
            if args.empty == "drop":
                continue
        im = LabelledImage(key, path, image_size(path), kept, split_of(key, args.val_share))
        labelled.append(im)
    names = list(vocab.names)
    splits = write_dataset(out, labelled, names, FORMATS[args.format])
    if args.sheet:
        save_png(label_sheet(labelled[: args.sheet], names), out / "sheet.png")
    counts = {n: 0 for n in names}
    for im in labelled:
        for r in im.labels:
            counts[names[r["category_id"] - 1]] += 1
    report = {
        "images": len(labelled),
        "labels": sum(counts.values()),
        "per_class": counts,
        "splits": splits,
        "empty": empty,
        "skipped": sorted(unread),
        "min_score": dict(zip(names, thresholds.tolist(), strict=True)),
        "agnostic_nms": args.agnostic_nms,
        "max_per_image": args.max_per_image,
        "model": str(args.model),
    }
    write_json(out / "label.json", report, indent=1)
    return report


def _keys(images) -> list[str]:
    """Each image's path inside the dataset: its path relative to the input folder, or (for a
    glob's absolute or parent-relative paths) its file name, numbered where names repeat."""
    keys, seen = [], set()
    for image_id, path in zip(images.ids, images.paths, strict=True):
        rel = PurePosixPath(str(image_id))
        key = str(rel) if not rel.is_absolute() and ".." not in rel.parts else path.name
        stem, n = key, 1
        while key in seen:
            n += 1
            key = str(PurePosixPath(stem).with_stem(f"{PurePosixPath(stem).stem}_{n}"))
        seen.add(key)
        keys.append(key)
    return keys


def _refuse_inside(out: Path, source: str) -> None:
    """The dataset must not be written inside the folder it labels (a later run would label its
    own copies)."""
    folder = Path(source)
    if folder.is_dir() and (
        out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents
    ):
        raise OvdetError(f"--out {out} is inside the labelled folder {folder}; write it elsewhere")
