"""`ovdet train sam2clip --images ...` and `ovdet train clip2sam --gt ... --images ...`:
Open-Vocabulary SAM's two stages on a user's own images and instance annotations (one process,
or torchrun's several)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ovdet.cli.common import add_device_arg, add_engine_args, add_novel_arg
from ovdet.cli.options import add_dataclass_args, dataclass_from_args, nonnegative_int, positive_int
from ovdet.errors import OvdetError


def register(train: argparse._SubParsersAction) -> None:
    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig
    from ovdet.methods.ovsam.sam2clip import Sam2ClipConfig
    from ovdet.train.precision import PRECISIONS

    p = train.add_parser(
        "sam2clip",
        help="Open-Vocabulary SAM's SAM2CLIP: distil a SAM's image encoder into an adapter on a "
        "CLIP's features, from a folder of images alone (SAM's embeddings cached once)",
    )
    p.add_argument("--images", required=True, help="a folder (searched recursively) or a glob")
    p.add_argument("--sam", default="sam-b", help="the teacher: SAM alias, hub id or folder")
    p.add_argument("--clip", default="clip-b16", help="CLIP alias, hub id or folder")
    p.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds a run)")
    p.add_argument(
        "--cache", default=None, help="SAM embedding cache (default OUT/teacher-cache; resumes)"
    )
    p.add_argument(
        "--val-images",
        type=nonnegative_int,
        default=16,
        help="images held out (the last by file name) for the held-out MSE",
    )
    p.add_argument("--shard-size", type=positive_int, default=64, help="images per cache shard")
    add_engine_args(p)
    _add_loader_args(p)
    add_dataclass_args(
        p, Sam2ClipConfig, skip=("clip", "sam", "val_scenes"), choices={"precision": PRECISIONS}
    )
    p.set_defaults(run=run_sam2clip)

    p = train.add_parser(
        "clip2sam",
        help="Open-Vocabulary SAM's CLIP2SAM: the recognition head and SAM's decoder on a "
        "SAM2CLIP run, from a COCO-format set's instance masks prompted by boxes and points",
    )
    p.add_argument("--gt", required=True, help="COCO-format instances (polygons or RLE masks)")
    p.add_argument("--images", required=True, help="folder the file_names are relative to")
    p.add_argument("--sam2clip", required=True, help="a `train sam2clip` run folder")
    p.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds a run)")
    add_novel_arg(p)
    _add_loader_args(p)
    add_dataclass_args(
        p, Clip2SamConfig, skip=("sam2clip", "world_seed"), choices={"precision": PRECISIONS}
    )
    p.set_defaults(run=run_clip2sam)


def _add_loader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=nonnegative_int,
        default=0,
        help="DataLoader processes reading images (results do not depend on it)",
    )
    add_device_arg(p)


def run_sam2clip(args: argparse.Namespace) -> int:
    from ovdet.data.image_list import find_images
    from ovdet.methods.ovsam.sam2clip import FolderOptions, Sam2ClipConfig, train_sam2clip
    from ovdet.train.distributed import init_distributed

    cfg = dataclass_from_args(Sam2ClipConfig, args, skip=("clip", "sam"))
    cfg = Sam2ClipConfig(**{**cfg.__dict__, "clip": args.clip, "sam": args.sam})
    images = find_images(args.images)
    where = init_distributed(args.device)
    cache = Path(args.cache) if args.cache else Path(args.out) / "teacher-cache"
    actors = args.actors if args.engine == "ray" else 0
    data = FolderOptions(cache, args.val_images, args.workers, args.shard_size, actors)
    report = train_sam2clip(args.out, cfg, images=images, data=data, where=where)
    if where.main:
        mse = report["val_mse"]
        held = f"held-out MSE {mse:.4f} on {report['val_images']} images" if mse is not None else ""
        Console().print(
            f"saved to {args.out}: {report['train_images']} training images"
            + (f", {report['skipped']} unreadable skipped" if report["skipped"] else "")
            + (f"; {held}" if held else "")
            + f"; next: ovdet train clip2sam --sam2clip {args.out} --gt ... --images ..."
        )
    return 0


def run_clip2sam(args: argparse.Namespace) -> int:
    from ovdet.api import checkpoint_kind
    from ovdet.cli.train import base_ids_of
    from ovdet.eval.data import load_gt
    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig, Clip2SamData, train_clip2sam
    from ovdet.train.distributed import init_distributed

    if checkpoint_kind(args.sam2clip) != "sam2clip":
        raise OvdetError(
            f"--sam2clip {args.sam2clip} is not a SAM2CLIP run: train one first with "
            "`ovdet train sam2clip --images DIR --sam ... --clip ... --out RUN`"
        )
    cfg = dataclass_from_args(Clip2SamConfig, args, skip=("sam2clip",))
    cfg = Clip2SamConfig(**{**cfg.__dict__, "sam2clip": args.sam2clip})
    gt = load_gt(args.gt)
    base = base_ids_of(gt, args.novel, args.gt)
    where = init_distributed(args.device)
    data = Clip2SamData(gt, Path(args.images), base, args.workers)
    out = train_clip2sam(args.out, cfg, data=data, where=where)
    if where.main:
        Console().print(
            f"saved to {out}; score it with `ovdet eval-ovsam --model {out} --gt ... --images ...`"
        )
    return 0
