"""`ovdet shapes ...`: generate the synthetic benchmark, train its tiny CLIP, measure it."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ovdet.cli.options import (
    add_dataclass_args,
    dataclass_from_args,
    nonnegative_int,
    positive_float,
    positive_int,
)
from ovdet.cli.ovsam_table import print_ovsam_table
from ovdet.errors import OvdetError

DEFAULT_DATA = "data/shapes"
VILD_FIXED = ("templates", "init", "freeze_backbone")  # the reproduction sets these per row
REGIONSPOT_FIXED = ("token", "depth", "feature_map", "class_token", "box_position", "prior")


def register(sub: argparse._SubParsersAction) -> None:
    shapes = sub.add_parser("shapes", help="the synthetic shapes world").add_subparsers(
        dest="shapes_command", required=True
    )
    from ovdet.data.shapes.generate import WorldConfig

    p = shapes.add_parser(
        "generate", help="render the caption, det-train, det-val and det-style splits"
    )
    p.add_argument("--out", default=DEFAULT_DATA)
    add_dataclass_args(p, WorldConfig)
    p.set_defaults(run=run_generate)

    from ovdet.train.shapes_clip import ClipTrainConfig

    p = shapes.add_parser("train-clip", help="train the tiny CLIP on the caption split")
    p.add_argument(
        "--data",
        nargs="+",
        default=[DEFAULT_DATA],
        help="one or more generated worlds; their caption splits are joined in this order",
    )
    p.add_argument("--out", default=None, help="model folder (default: the bundled shapes-clip)")
    add_dataclass_args(p, ClipTrainConfig)
    p.set_defaults(run=run_train_clip)

    p = shapes.add_parser(
        "eval-clip", help="zero-shot accuracy and region-recognition AP of a CLIP"
    )
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument(
        "--data",
        default=None,
        help=f"a generated world (its det-val and det-style are used; default {DEFAULT_DATA}, "
        "skipped when absent)",
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=1234, help="seed of the fresh single-object images"
    )
    p.add_argument("--count", type=positive_int, default=1600)
    p.add_argument(
        "--robust-count", type=positive_int, default=400, help="images per robustness condition"
    )
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.set_defaults(run=run_eval_clip)

    from ovdet.methods.vild.train import ViLDTrainConfig

    p = shapes.add_parser(
        "reproduce-vild", help="ViLD's table in the shapes world (trains 4 detectors)"
    )
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default="runs/shapes-vild")
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument("--image-weight", type=positive_float, default=0.5, help="w of the ViLD row")
    p.add_argument(
        "--bundle",
        action="store_true",
        help="copy the ViLD and ViLD-text checkpoints into the package (shapes-vild, -vild-text)",
    )
    p.add_argument(
        "--rows",
        default="",
        help="comma-separated rows to run (default all; ViLD-text is trained anyway)",
    )
    add_dataclass_args(p, ViLDTrainConfig, skip=VILD_FIXED)
    p.set_defaults(run=run_reproduce_vild)

    _register_reproduce_rkd(shapes)
    _register_reproduce_codet(shapes)

    from ovdet.train.shapes_sam import SamTrainConfig

    p = shapes.add_parser("train-sam", help="train the tiny SAM on rendered scenes' masks")
    p.add_argument("--out", default=None, help="model folder (default: the bundled shapes-sam)")
    add_dataclass_args(p, SamTrainConfig)
    p.set_defaults(run=run_train_sam)

    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig
    from ovdet.methods.ovsam.sam2clip import Sam2ClipConfig

    for name, config, run, what in (
        ("train-sam2clip", Sam2ClipConfig, run_train_sam2clip,
         "SAM2CLIP: distil shapes-sam's encoder into an adapter on shapes-clip's features"),
        ("train-clip2sam", Clip2SamConfig, run_train_clip2sam,
         "CLIP2SAM: the recognition head and SAM's decoder on a SAM2CLIP run, det-train base "
         "objects prompted by boxes and points"),
    ):  # fmt: skip
        p = shapes.add_parser(name, help=f"Open-Vocabulary SAM's {what} (resumable)")
        p.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds one)")
        add_dataclass_args(p, config)
        p.set_defaults(run=run)

    p = shapes.add_parser(
        "reproduce-ovsam",
        help="Open-Vocabulary SAM's table in the shapes world by one command: train-sam2clip, "
        "train-clip2sam on it, eval-ovsam, GFLOPs and parameters (both trainings resume)",
    )
    p.add_argument("--out", default="runs/shapes-ovsam")
    p.add_argument("--sam2clip-steps", type=nonnegative_int, default=Sam2ClipConfig.steps)
    p.add_argument("--clip2sam-steps", type=nonnegative_int, default=Clip2SamConfig.steps)
    p.add_argument("--val-scenes", type=positive_int, default=Sam2ClipConfig.val_scenes,
                   help="held-out scenes of SAM2CLIP's mIoU report")  # fmt: skip
    p.add_argument("--images", type=positive_int, default=500, help="det-val scenes")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument(
        "--bundle",
        action="store_true",
        help="copy the two runs into the package as shapes-sam2clip and shapes-ovsam",
    )
    p.set_defaults(run=run_reproduce_ovsam)

    p = shapes.add_parser(
        "eval-ovsam",
        help="Open-Vocabulary SAM vs feature-crop on det-val: names and masks from GT boxes and "
        "interior points",
    )
    p.add_argument("--model", required=True, help="a train-clip2sam folder")
    p.add_argument("--sam", default="shapes-sam", help="the feature-crop baseline's SAM")
    p.add_argument("--images", type=positive_int, default=500, help="det-val scenes")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the table to this JSON file")
    p.set_defaults(run=run_eval_ovsam)

    p = shapes.add_parser("eval-sam", help="box-prompt mask mIoU of a SAM on det-val")
    p.add_argument(
        "--sam", default="shapes-sam", help="a SAM, or a SAM2CLIP run (train-sam2clip --out)"
    )
    p.add_argument("--data", default=DEFAULT_DATA, help="a generated world (its det-val is used)")
    p.set_defaults(run=run_eval_sam)

    from ovdet.methods.regionspot.train import RegionSpotTrainConfig

    p = shapes.add_parser(
        "reproduce-regionspot",
        help="RegionSpot's table and ablations in the shapes world (GT boxes, det-val)",
    )
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default="runs/shapes-regionspot")
    p.add_argument("--sam", default="shapes-sam")
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument(
        "--clip-size", type=positive_int, default=128, help="CLIP input side (whole image)"
    )
    p.add_argument(
        "--bundle",
        action="store_true",
        help="copy the main RegionSpot checkpoint into the package as shapes-regionspot",
    )
    add_dataclass_args(p, RegionSpotTrainConfig, skip=REGIONSPOT_FIXED)
    p.set_defaults(run=run_reproduce_regionspot)


def _register_reproduce_rkd(shapes: argparse._SubParsersAction) -> None:
    from ovdet.experiments.rkd import RKDExperiment
    from ovdet.methods.rkd.train import RKDTrainConfig

    p = shapes.add_parser(
        "reproduce-rkd", help="RKD's table in the shapes world (fine-tunes 11 detectors)"
    )
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default="runs/shapes-rkd")
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a minutes-long pass over the whole pipeline: few images, 2 seeds, 40 steps",
    )
    add_dataclass_args(p, RKDExperiment)
    add_dataclass_args(p, RKDTrainConfig)
    p.set_defaults(run=run_reproduce_rkd)


QUICK_RKD = {"train_images": 48, "caption_images": 48, "seeds": 2, "steps": 40, "warmup": 5}


def _reproduce(args: argparse.Namespace, quick: dict[str, Any], reproduce, cfg_cls, exp_cls):
    """Run a fine-tuning method's reproduction (RKD, CoDet) from its CLI options; print the
    table of every evaluated split; return the results."""
    from ovdet.models.loader import load_model

    if args.quick:
        for k, v in quick.items():
            setattr(args, k, v)
    results = reproduce(
        args.data,
        args.out,
        load_model(args.clip),
        dataclass_from_args(cfg_cls, args),
        dataclass_from_args(exp_cls, args),
    )
    title = f"{cfg_cls.__name__.removesuffix('TrainConfig')} in the shapes world (LVIS protocol; "
    title += f"AP_r = novel), {args.out}"
    for split in next(iter(results["rows"].values())):
        _print_table(f"{title}: {split}", {k: r[split] for k, r in results["rows"].items()})
    return results


def run_reproduce_rkd(args: argparse.Namespace) -> int:
    from ovdet.experiments.rkd import RKDExperiment, reproduce_rkd
    from ovdet.methods.rkd.train import RKDTrainConfig

    results = _reproduce(args, QUICK_RKD, reproduce_rkd, RKDTrainConfig, RKDExperiment)
    Console().print({"seeds": results["seeds"], "pseudo boxes": results["pseudo boxes"]})
    return 0


def _register_reproduce_codet(shapes: argparse._SubParsersAction) -> None:
    from ovdet.experiments.codet import CoDetExperiment
    from ovdet.methods.codet.cooccur import PHI_INPUTS, PROTOTYPES
    from ovdet.methods.codet.train import CoDetTrainConfig

    p = shapes.add_parser(
        "reproduce-codet", help="CoDet's table in the shapes world (fine-tunes 9 detectors)"
    )
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default="runs/shapes-codet")
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a minutes-long pass over the whole pipeline: few images, 40 steps",
    )
    add_dataclass_args(p, CoDetExperiment)
    choices = {"prototype": PROTOTYPES, "phi_input": PHI_INPUTS}
    add_dataclass_args(
        p, CoDetTrainConfig, skip=("pseudo", "text_guidance", "loss"), choices=choices
    )
    p.set_defaults(run=run_reproduce_codet)


QUICK_CODET = {
    "train_images": 48,
    "caption_images": 64,
    "hit_groups": 2,
    "steps": 40,
    "warmup": 5,
}


def run_reproduce_codet(args: argparse.Namespace) -> int:
    from ovdet.experiments.codet import CoDetExperiment, reproduce_codet
    from ovdet.methods.codet.train import CoDetTrainConfig

    results = _reproduce(args, QUICK_CODET, reproduce_codet, CoDetTrainConfig, CoDetExperiment)
    Console().print({"hit rate (%)": results["hit rate"], "companion": results["companion"]})
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from ovdet.data.shapes.generate import WorldConfig, generate_world

    out = generate_world(args.out, dataclass_from_args(WorldConfig, args))
    Console().print(f"wrote the shapes world to {out}")
    return 0


def _bundled_out(out: str | None, name: str) -> str:
    """`out`, or the folder of the bundled model `name` inside the installed package."""
    if out is not None:
        return out
    from ovdet.models.bundled import resource_folder

    return str(resource_folder(name))


def run_train_clip(args: argparse.Namespace) -> int:
    from ovdet.train.shapes_clip import ClipTrainConfig, train_shapes_clip

    cfg = dataclass_from_args(ClipTrainConfig, args)
    out = _bundled_out(args.out, "shapes-clip")
    Console().print(f"saved to {train_shapes_clip(args.data, out, cfg)}")
    return 0


def run_train_sam(args: argparse.Namespace) -> int:
    from ovdet.train.shapes_sam import SamTrainConfig, train_shapes_sam

    cfg = dataclass_from_args(SamTrainConfig, args)
    out = _bundled_out(args.out, "shapes-sam")
    report = train_shapes_sam(out, cfg)
    Console().print(
        f"saved to {out}; box-prompt mIoU on {cfg.val_scenes} held-out scenes: "
        f"{report['val_scene_miou']:.3f}"
    )
    return 0


def run_train_sam2clip(args: argparse.Namespace) -> int:
    from ovdet.methods.ovsam.sam2clip import Sam2ClipConfig, train_sam2clip

    cfg = dataclass_from_args(Sam2ClipConfig, args)
    report = train_sam2clip(args.out, cfg)
    Console().print(
        f"saved to {args.out}; box-prompt mIoU through {cfg.sam}'s frozen decoder on "
        f"{cfg.val_scenes} held-out scenes: SAM2CLIP {report['val_miou_sam2clip']:.3f}, "
        f"{cfg.sam}'s own encoder {report['val_miou_sam']:.3f} (held-out MSE "
        f"{report['val_mse']:.4f})"
    )
    return 0


def run_train_clip2sam(args: argparse.Namespace) -> int:
    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig, train_clip2sam
    from ovdet.models.bundled import checkpoint_folder

    cfg = dataclass_from_args(Clip2SamConfig, args)
    if not (checkpoint_folder(cfg.sam2clip) / "spec.json").is_file():
        raise OvdetError(
            f"--sam2clip {cfg.sam2clip} holds no SAM2CLIP run: train one first with "
            "`ovdet shapes train-sam2clip --out runs/sam2clip`"
        )
    out = train_clip2sam(args.out, cfg)
    Console().print(f"saved to {out}; score it with `ovdet shapes eval-ovsam --model {out}`")
    return 0


def run_reproduce_ovsam(args: argparse.Namespace) -> int:
    from ovdet.experiments.ovsam import reproduce_ovsam
    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig
    from ovdet.methods.ovsam.sam2clip import Sam2ClipConfig

    s2c = Sam2ClipConfig(steps=args.sam2clip_steps, val_scenes=args.val_scenes)
    c2s = Clip2SamConfig(steps=args.clip2sam_steps, world_seed=args.world_seed)
    results = reproduce_ovsam(args.out, s2c, c2s, args.images)
    print_ovsam_table(results["rows"], f"det-val, {args.images} scenes ({args.out})")
    table = Table(title="per image, the pipeline before the prompts (128 px)")
    for col in ("pipeline", "GFLOPs", "parameters (M)"):
        table.add_column(col, justify="right")
    for name, c in results["cost"].items():
        table.add_row(name, f"{c['gflops']:.3f}" if "gflops" in c else "", f"{c['params_m']:.2f}")
    Console().print(table)
    r = results["sam2clip"]
    Console().print(
        f"SAM2CLIP box-prompt mIoU on {args.val_scenes} held-out scenes: "
        f"{r['val_miou_sam2clip']:.3f} (shapes-sam's own encoder {r['val_miou_sam']:.3f})"
    )
    if args.bundle:
        from ovdet.models.bundle import bundle_run
        from ovdet.models.bundled import resource_folder

        out = Path(args.out)
        bundle_run(out / "sam2clip", resource_folder("shapes-sam2clip"), r)
        bundle_run(out / "ovsam", resource_folder("shapes-ovsam"), results,
                   spec={"sam2clip": "shapes-sam2clip"})  # fmt: skip
        Console().print("bundled them as shapes-sam2clip and shapes-ovsam")
    return 0


def run_eval_ovsam(args: argparse.Namespace) -> int:
    from ovdet.io.atomic import write_json
    from ovdet.methods.ovsam.clip2sam import OVSam
    from ovdet.methods.ovsam.evaluate import evaluate_ovsam
    from ovdet.models.sam import SamBackend

    model = OVSam(args.model)
    rows, seconds = evaluate_ovsam(
        model, SamBackend.from_pretrained(args.sam), args.images, args.world_seed
    )
    listed = [{"prompt": p, "method": m, **r} for (p, m), r in rows.items()]
    print_ovsam_table(listed, f"det-val, {args.images} scenes")
    if args.out:
        write_json(args.out, listed)
    return 0


def run_eval_sam(args: argparse.Namespace) -> int:
    from ovdet.api import checkpoint_kind
    from ovdet.eval.data import load_gt
    from ovdet.eval.masks import box_prompt_miou
    from ovdet.models.sam import SamBackend

    val = Path(args.data) / "det-val"
    if checkpoint_kind(args.sam) == "sam2clip":  # a run folder or the bundled shapes-sam2clip
        from ovdet.methods.ovsam.sam2clip import load_sam2clip

        sam, _ = load_sam2clip(args.sam)
    else:
        sam = SamBackend.from_pretrained(args.sam)
    r = box_prompt_miou(sam, load_gt(val / "annotations.json"), val)
    Console().print(
        f"{args.sam}: box-prompt mask mIoU {r['mIoU']:.3f} over {r['masks']} GT masks of {val} "
        f"({r['s_per_image']:.3f} s/image)"
    )
    return 0


def run_eval_clip(args: argparse.Namespace) -> int:
    from ovdet.eval.data import load_gt
    from ovdet.eval.shapes_clip import (
        region_recognition_report,
        robustness_report,
        zero_shot_report,
    )
    from ovdet.models.loader import load_model

    if args.data is not None and not Path(args.data).is_dir():
        raise OvdetError(
            f"--data {args.data}: no such folder (make one: ovdet shapes generate --out "
            f"{args.data})"
        )
    data = Path(args.data or DEFAULT_DATA)
    model = load_model(args.clip)
    zero_shot = zero_shot_report(model, args.seed, args.count)
    console = Console()
    table = Table(
        title=f"zero-shot, {zero_shot.images} fresh classic single-object images (seed {args.seed})"
    )
    for col in ("shape top-1", "novel shapes", "base shapes", "colour top-1"):
        table.add_column(col, justify="right")
    table.add_row(
        *(
            f"{v:.1f}%"
            for v in (
                zero_shot.shape_top1,
                zero_shot.novel_shape_top1,
                zero_shot.base_shape_top1,
                zero_shot.colour_top1,
            )
        )
    )
    console.print(table)
    robust = robustness_report(model, args.seed, args.robust_count)
    table = Table(title=f"shape top-1 under changes of rendering ({args.robust_count} images each)")
    table.add_column("condition")
    table.add_column("top-1", justify="right")
    for name, value in robust.items():
        table.add_row(name, f"{value:.1f}%")
    console.print(table)
    report = {"zero_shot": asdict(zero_shot), "robustness": robust, "region_recognition": {}}
    for split in ("det-val", "det-style"):
        val = data / split
        if not (val / "annotations.json").is_file():
            console.print(f"no {val}/annotations.json: {split} region recognition skipped")
            continue
        gt = load_gt(val / "annotations.json")
        table = Table(
            title=f"GT-box region recognition, {len(gt['images'])} {split} images, LVIS protocol"
        )
        for col in ("method", "AP", "AP50", "APr (novel)", "APc", "APf", "top-1", "s/image"):
            table.add_column(col, justify="right")
        for method in ("crop", "dense"):
            r = region_recognition_report(model, gt, str(val), method)
            report["region_recognition"][f"{split} {method}"] = r
            table.add_row(
                method,
                *(f"{r[k]:.1f}" for k in ("AP", "AP50", "APr", "APc", "APf", "top1")),
                f"{r['s_per_image']:.3f}",
            )
        console.print(table)
    if args.out:
        from ovdet.io.atomic import write_json

        write_json(args.out, report, indent=1)
    return 0


def run_reproduce_vild(args: argparse.Namespace) -> int:
    from ovdet.experiments.vild import reproduce_vild, row_names
    from ovdet.methods.vild.train import ViLDTrainConfig
    from ovdet.models.loader import load_model

    cfg = dataclass_from_args(ViLDTrainConfig, args, skip=VILD_FIXED)
    if args.bundle and args.rows:
        raise OvdetError("--bundle copies the ViLD and ViLD-text rows: run all rows with it")
    row_names(args.rows)  # refuse an unknown row before loading anything
    results = reproduce_vild(
        args.data, args.out, load_model(args.clip), args.clip, cfg, args.image_weight, args.rows
    )
    _print_results(f"ViLD in the shapes world (LVIS protocol; AP_r = novel), {args.out}", results)
    if args.bundle:
        from ovdet.models.bundle import bundle_run
        from ovdet.models.bundled import resource_folder

        for row, name in (("ViLD", "shapes-vild"), ("ViLD-text", "shapes-vild-text")):
            bundle_run(Path(args.out) / row, resource_folder(name), results, half=True)
            Console().print(f"bundled {Path(args.out) / row} as {name}")
    return 0


def _print_results(title: str, results: dict[str, dict[str, Any]]) -> None:
    """Tables of method -> metrics: det-val's, then det-style's where rows carry one."""
    _print_table(f"{title}: det-val", results)
    _print_table(f"{title}: det-style", {k: r["style"] for k, r in results.items() if "style" in r})


def _print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    """method -> AP, AP50, AP_r, AP_c, AP_f, top-1 per GT box (recognition rows), s/image."""
    if not rows:
        return
    table = Table(title=title)
    for col in ("method", "AP", "AP50", "APr (novel)", "APc", "APf", "top-1", "s/image"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        table.add_row(
            name,
            *(f"{r[k]:.1f}" for k in ("AP", "AP50", "APr", "APc", "APf") if k in r),
            f"{r['top1']:.1f}" if "top1" in r else "",
            f"{r['s_per_image']:.3f}",
        )
    Console().print(table)


def run_reproduce_regionspot(args: argparse.Namespace) -> int:
    from ovdet.experiments.regionspot import reproduce_regionspot
    from ovdet.methods.regionspot.train import RegionSpotTrainConfig
    from ovdet.models.loader import load_model
    from ovdet.models.sam import SamBackend

    cfg = dataclass_from_args(RegionSpotTrainConfig, args, skip=REGIONSPOT_FIXED)
    results = reproduce_regionspot(
        args.data,
        args.out,
        SamBackend.from_pretrained(args.sam),
        load_model(args.clip),
        {"sam": args.sam, "clip": args.clip},
        cfg,
        args.clip_size,
    )
    _print_results(
        f"RegionSpot in the shapes world (LVIS protocol, AP_r = novel), {args.out}",
        results,
    )
    if args.bundle:
        from ovdet.models.bundle import bundle_run
        from ovdet.models.bundled import resource_folder

        source = Path(next(r["checkpoint"] for r in results.values() if "checkpoint" in r))
        target = bundle_run(source, resource_folder("shapes-regionspot"), results)
        Console().print(f"bundled {source} as {target}")
    return 0
