"""`ovdet detect IMAGE... --model CHECKPOINT --vocab ...`: open-vocabulary detection.

A ViLD checkpoint detects with its own RPN. A RegionSpot checkpoint names proposals from any
source: SAM's everything mode (default), a COCO results JSON of another detector (entries whose
image_id names the image), or a COCO dataset's ground-truth boxes.

Writes `detections.json` (one COCO results list for every image, ready for `ovdet eval`: with
`--gt`, image ids are that file's integer ids; without, each image's path), plus a picture and a
JSON per image named by its stem (its file name where two inputs share a stem).

With `--images DIR|GLOB` (and optionally `--gt`, whose images are then read from DIR) it is a
dataset pass instead (`ovdet.runner`): images streamed and batched, one results file only,
resumable after a kill, and `--eval` scores it at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ovdet.cli.common import (
    add_cache_args,
    add_device_arg,
    add_everything_args,
    add_pass_args,
    add_protocol_options,
    output_names,
)
from ovdet.cli.options import nonnegative_int, positive_int, unit_float
from ovdet.errors import OvdetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect any vocabulary (ViLD or RegionSpot checkpoint)")
    p.add_argument("images", nargs="*", help="image files (or a dataset with --images)")
    p.add_argument(
        "--images",
        dest="dataset",
        default=None,
        help="dataset pass: a folder (recursively) or a glob; with --gt, the folder its "
        "file_names are in. Writes one results file (--out), resumable",
    )
    p.add_argument(
        "--model",
        required=True,
        help="ViLD or RegionSpot checkpoint folder (ovdet train vild/regionspot), "
        "shapes-vild / shapes-regionspot, a hub repo, or an .onnx file from ovdet export",
    )
    p.add_argument(
        "--proposals",
        default="sam",
        help='RegionSpot only: "sam" (SAM everything mode), or a JSON of boxes: COCO results '
        "of another detector or a COCO dataset (ground truth)",
    )
    add_everything_args(p)
    p.add_argument(
        "--sam",
        default=None,
        help="RegionSpot: load its SAM from here instead of the path its checkpoint records "
        "(the same checkpoint, moved)",
    )
    p.add_argument("--clip", default=None, help="RegionSpot: likewise for its CLIP")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="ViLD: run the model under autocast (bf16 on a CPU or GPU, fp16 on a GPU)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="ViLD: torch.compile the backbone (the first image pays about 30 s of compiling, "
        "the rest run faster: for --images runs)",
    )
    v = p.add_argument_group("video (an .mp4, .avi, .mov, .mkv or .webm input)")
    v.add_argument("--every", type=positive_int, default=1, help="detect every N-th frame")
    v.add_argument(
        "--track",
        action="store_true",
        help="link detections across frames (ByteTrack, ovdet[video]): track_id per record",
    )
    p.add_argument(
        "--vocab", required=True, help='class names: "cat, traffic cone", a file, or "coco"'
    )
    p.add_argument(
        "--min-score", type=unit_float, default=0.3, help="drawn and printed above this score"
    )
    p.add_argument(
        "--gt",
        default=None,
        help="COCO file whose images the inputs are: detections.json then uses its image and "
        "category ids, ready for `ovdet eval --gt` with the same file",
    )
    p.add_argument(
        "--out",
        default="out",
        help="folder for detections.json, <image>.json and <image>.png; with --images, the "
        "results file (a folder gets detections.json)",
    )
    d = p.add_argument_group("dataset pass (--images)")
    add_pass_args(d)
    d.add_argument(
        "--draw", type=nonnegative_int, default=4, help="pictures of the first N images (pictures/)"
    )
    d.add_argument(
        "--eval",
        action="store_true",
        help="score the results against --gt (metrics.json, eval.png)",
    )
    add_protocol_options(d)
    add_device_arg(p)
    add_cache_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ovdet.io.atomic import refuse_overwriting, write_json
    from ovdet.io.coco import regions_to_coco
    from ovdet.io.images import load_image
    from ovdet.viz import draw_regions, encode_png, write_bytes
    from ovdet.vocab.parse import parse_vocabulary

    if args.dataset is not None:
        from ovdet.cli.detect_dataset import run_dataset

        return run_dataset(args)
    if not args.images:
        raise OvdetError("give image files, or a dataset with --images DIR (and --gt)")
    if args.eval:
        raise OvdetError("--eval scores a dataset pass: use --images DIR --gt FILE")
    vocab = parse_vocabulary(args.vocab)
    from ovdet.io.video import is_video

    videos = [p for p in args.images if is_video(p)]
    if videos:
        return _run_videos(args, vocab, videos)
    ids, category_ids = _gt_ids(args.images, args.gt, vocab)
    keys = output_names(args.images)
    for path in args.images:  # every path checked before any model loads
        if Path(path).is_dir():
            raise OvdetError(f"expected image files, got a folder: {path} (use {path}/*.png)")
        if not Path(path).is_file():
            raise OvdetError(f"image file not found: {path}")
    out = Path(args.out)
    if out.suffix.lower() == ".json":
        raise OvdetError(
            f"--out {out}: detect on image files writes a folder (detections.json, <image>.json, "
            f"<image>.png); give a folder such as --out {out.with_suffix('')}, or use --images "
            "DIR for one results file"
        )
    written = [out / f"{k}.{ext}" for k in keys for ext in ("png", "json")]
    refuse_overwriting(
        [*written, out / "detections.json"],
        [*args.images, args.gt, args.proposals, args.vocab],
    )
    detector = _detector(args, vocab)
    novel = vocab.novel_mask(detector.base_names).tolist()
    console = Console()
    everything = []
    for path, image_id, key in zip(args.images, ids, keys, strict=True):
        image = load_image(path)
        regions = detector.detect(image, vocab, **_proposals(args.proposals, image, path))
        entries = regions_to_coco(regions, image_id=image_id, category_ids=category_ids)
        for e, label in zip(entries, regions.labels.tolist(), strict=True):
            e["category_name"] = vocab.names[label]
        shown = regions[regions.scores >= args.min_score]
        picture = encode_png(draw_regions(image, shown, list(vocab.names)))
        write_bytes(out / f"{key}.png", picture)  # the picture first, the JSON last
        write_json(out / f"{key}.json", entries, indent=1)
        everything += entries
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
    write_json(out / "detections.json", everything, indent=1)
    console.print(f"wrote {out / 'detections.json'} ({len(everything)} detections)")
    return 0


def _run_videos(args: argparse.Namespace, vocab, videos: list[str]) -> int:
    """Video files: each one's frames detected (`cli.detect_video`)."""
    from rich.console import Console

    from ovdet.cli.detect_video import run_video

    if len(videos) != len(args.images):
        raise OvdetError("give video files or image files, not both in one command")
    if args.gt is not None:
        raise OvdetError("--gt goes with images; a video's detections are keyed by frame")
    for path in videos:
        if not Path(path).is_file():
            raise OvdetError(f"video file not found: {path}")
    detector = _detector(args, vocab)
    for path in videos:
        done = run_video(args, detector, vocab, path)
        stem = Path(path).stem
        Console().print(
            f"{path}: {done['frames']} frames, {done['detections']} detections"
            + (f", {done['tracks']} tracks" if args.track else "")
            + f"; wrote {Path(args.out) / (stem + '.json')} and {Path(args.out) / (stem + '.mp4')}"
        )
    return 0


def _gt_ids(paths: list[str], gt: str | None, vocab) -> tuple[list, list[int] | None]:
    """Each image's COCO id and each class's category id. With `gt`: its image ids (matched by
    file name) and its category ids (matched by name or synonym); without: the image's path
    (`ovdet eval` maps such ids by file name) and the vocabulary index + 1."""
    if gt is None:
        return [Path(p).as_posix() for p in paths], None
    from ovdet.eval.data import load_gt
    from ovdet.io.coco import match_name

    data = load_gt(gt)
    names = [str(im.get("file_name", "")) for im in data["images"]]
    ids = []
    for p in paths:
        hit = match_name(p, names)
        if hit is None:
            raise OvdetError(f"{gt} has no image named like {Path(p).name!r}")
        ids.append(data["images"][hit]["id"])
    return ids, gt_category_ids(data, gt, vocab)


def gt_category_ids(data: dict, gt: str, vocab) -> list[int]:
    """Each vocabulary name's category id in the ground truth (by name or synonym)."""
    by_name = {}
    for c in data["categories"]:
        for n in [c["name"], *(c.get("synonyms") or [])]:
            by_name.setdefault(str(n).replace("_", " ").lower(), c["id"])
    unknown = [n for n in vocab.names if n.lower() not in by_name]
    if unknown:
        raise OvdetError(
            f"--gt {gt} has no category named {unknown[0]!r}; with --gt the vocabulary names "
            "its categories (e.g. --vocab the same file)"
        )
    return [by_name[n.lower()] for n in vocab.names]


def _detector(args: argparse.Namespace, vocab):
    """The checkpoint as a `Detector` (ovdet.load decides the kind)."""
    from ovdet.api import checkpoint_kind, load
    from ovdet.cli.common import everything_config, text_cache

    kind = checkpoint_kind(args.model)
    if kind not in ("vild", "regionspot", "onnx"):
        raise OvdetError(f"--model {args.model} is a {kind} model, not a detector checkpoint")
    precision = getattr(args, "precision", "fp32")
    if precision != "fp32" and kind != "vild":
        raise OvdetError(f"--precision {precision} applies to a ViLD --model, not a {kind} one")
    compiled = getattr(args, "compile", False)
    if compiled and kind != "vild":
        raise OvdetError(f"--compile applies to a ViLD --model, not a {kind} one")
    if kind == "onnx":
        detector = load(args.model, device=args.device)
        detector.check_vocabulary(vocab)  # before any image is read
        return detector
    if kind == "vild":
        if args.proposals != "sam":
            raise OvdetError("--proposals needs a RegionSpot --model; ViLD uses its own RPN")
        if getattr(args, "sam", None) or getattr(args, "clip", None):
            raise OvdetError("--sam and --clip go with a RegionSpot --model (a ViLD has its own)")
        cache = text_cache(args)
        options = {"precision": precision} | ({"compile": True} if compiled else {})
        return load(args.model, device=args.device, text_cache=cache, **options)
    from ovdet.methods.regionspot.recognizer import RegionSpotDetector

    moved = {}
    if getattr(args, "sam", None):
        from ovdet.models.sam import SamBackend

        moved["sam"] = SamBackend.from_pretrained(args.sam, device=args.device)
    if getattr(args, "clip", None):
        from ovdet.models.loader import load_model

        moved["clip"] = load_model(args.clip, device=args.device)
    spot = load(args.model, device=args.device, text_cache=text_cache(args), **moved)
    return RegionSpotDetector(spot, everything=everything_config(args))


def _proposals(source: str, image, path: str) -> dict:
    """`detect`'s extra arguments for one image: {} for SAM's everything mode, else the boxes
    the --proposals JSON gives this image."""
    if source == "sam":
        return {}
    from ovdet.io.coco import read_boxes
    from ovdet.ops.boxes import validate_input_boxes

    boxes = validate_input_boxes(read_boxes(source, image_name=path), tuple(image.shape[-2:]))
    return {"proposals": boxes}
