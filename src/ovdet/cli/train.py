"""`ovdet train vild|regionspot|rkd|codet ...`: train a head on a COCO-format set's base
categories (RKD and CoDet also learn from captioned images); `sam2clip` and `clip2sam` are in
`cli.train_ovsam`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ovdet.cli.common import add_device_arg, add_novel_arg
from ovdet.cli.options import (
    add_dataclass_args,
    dataclass_from_args,
    nonnegative_float,
    positive_int,
)
from ovdet.errors import OvdetError
from ovdet.eval.data import load_gt, make_split


class _DeprecatedBase(argparse.Action):
    """--base, the old name of --novel (it always took the novel names): warns, then sets it."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        import warnings

        warnings.warn(
            "--base takes the novel categories and is renamed --novel; --base will be removed",
            FutureWarning,
            stacklevel=2,
        )
        namespace.novel = values


def _add_data_args(p: argparse.ArgumentParser, gt_help: str) -> None:
    """--gt, --out and --novel, shared by every trainer; --preset and --print-config (read
    before parsing, by `cli.presets` and `cli.main`: listed here for --help)."""
    p.add_argument(
        "--preset",
        help="a paper's configuration (vild-r50-fpn-lvis, rkd-r50-fpn-coco-ovd, "
        "codet-r50-fpn-lvis, or a preset JSON file); options typed after it override it",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved options and exit"
    )
    p.add_argument("--gt", required=True, help=gt_help)
    p.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds a run)")
    add_novel_arg(p)
    p.add_argument(
        "--base", action=_DeprecatedBase, help="deprecated name of --novel", dest="novel"
    )


def register(sub: argparse._SubParsersAction) -> None:
    from ovdet.data.pipeline import SAMPLINGS
    from ovdet.detect.build import NECKS
    from ovdet.methods.vild.train import ViLDTrainConfig
    from ovdet.train.precision import PRECISIONS
    from ovdet.vocab.prompts import TEMPLATE_SETS

    train = sub.add_parser("train", help="train a detector head").add_subparsers(
        dest="train_command", required=True
    )
    p = train.add_parser("vild", help="ViLD: text embeddings as classifier, CLIP crops distilled")
    _add_data_args(p, "COCO-format training annotations")
    p.add_argument("--images", required=True, help="folder of the training images")
    p.add_argument(
        "--clip", default="clip-b16", help="CLIP for text embeddings and crop distillation"
    )
    p.add_argument(
        "--image-weight", type=nonnegative_float, default=0.0, help="w of L_image (0: ViLD-text)"
    )
    p.add_argument("--ensemble", action="store_true", help="separate text and image heads")
    p.add_argument(
        "--mask",
        action="store_true",
        help="train a class-agnostic mask head too (needs instance masks: polygons or RLE)",
    )
    p.add_argument(
        "--proposals",
        default=None,
        help="checkpoint whose RPN supplies the cached proposals for L_image",
    )
    p.add_argument(
        "--val-gt",
        default=None,
        help="evaluate on this set at the end (LVIS protocol if it has frequencies, else COCO)",
    )
    p.add_argument("--val-images", default=None)
    _add_stop_arg(p)
    add_device_arg(p)
    choices = {"templates": TEMPLATE_SETS, "sampling": SAMPLINGS, "precision": PRECISIONS}
    choices |= {"neck": NECKS}
    add_dataclass_args(p, ViLDTrainConfig, choices=choices)
    p.set_defaults(run=run)
    _register_regionspot(train)
    _register_rkd(train)
    _register_codet(train)
    from ovdet.cli import train_ovsam

    train_ovsam.register(train)


def _add_stop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stop-at",
        type=positive_int,
        default=None,
        help="checkpoint and exit once this many steps are done (a preemptible job's slice); "
        "the command without it (or with a larger one) goes on from there",
    )


def _add_caption_args(p: argparse.ArgumentParser, required: bool, help: str) -> None:
    p.add_argument("--captions", required=required, default=None, help=help)
    p.add_argument(
        "--caption-images", default=None, help="their folder (default: the captions file's)"
    )


def _register_codet(train: argparse._SubParsersAction) -> None:
    from ovdet.methods.codet.cooccur import PHI_INPUTS, PROTOTYPES
    from ovdet.methods.codet.train import LOSS_FORMS, PSEUDO_REGIONS, CoDetTrainConfig

    p = train.add_parser(
        "codet",
        help="CoDet: fine-tune a ViLD-text checkpoint with region-word alignment discovered from "
        "co-occurring objects in image-caption pairs",
    )
    _add_data_args(p, "COCO-format training annotations (base boxes)")
    p.add_argument("--images", required=True, help="folder of the training images")
    _add_caption_args(p, True, "COCO captions file of the image-caption pairs")
    p.add_argument(
        "--concepts",
        default=None,
        help="the concept vocabulary captions are read for (any ovdet vocabulary: names, a file); "
        "default: the annotation file's categories, novel ones included",
    )
    p.add_argument("--val-gt", default=None, help="evaluate on this set at the end")
    p.add_argument("--val-images", default=None)
    _add_stop_arg(p)
    add_device_arg(p)
    choices = {"pseudo": PSEUDO_REGIONS, "loss": LOSS_FORMS}
    choices |= {"prototype": PROTOTYPES, "phi_input": PHI_INPUTS}
    add_dataclass_args(p, CoDetTrainConfig, choices=choices)
    p.set_defaults(run=run_codet)


def _register_rkd(train: argparse._SubParsersAction) -> None:
    from ovdet.methods.rkd.train import RKDTrainConfig

    p = train.add_parser(
        "rkd", help="RKD: fine-tune a ViLD-text checkpoint with region distillation and PIS"
    )
    _add_data_args(p, "COCO-format training annotations (its categories name the captions)")
    p.add_argument("--images", required=True, help="folder of the training images")
    _add_caption_args(
        p, False, "COCO captions file of extra images for pseudo-box image-level supervision"
    )
    p.add_argument(
        "--pseudo-labeler",
        default="owlv2",
        help='"owlv2", "owlv2:<hub id or folder>", a class-agnostic proposals JSON (named by the '
        'CLIP), or "shapes" (the shapes world\'s SAM + CLIP stand-in)',
    )
    p.add_argument("--no-distill", action="store_true", help="no region distillation (PIS only)")
    p.add_argument("--top-proposals", type=int, default=5, help="distilled proposals per image")
    p.add_argument("--val-gt", default=None, help="evaluate on this set at the end")
    p.add_argument("--val-images", default=None)
    _add_stop_arg(p)
    add_device_arg(p)
    add_dataclass_args(p, RKDTrainConfig)
    p.set_defaults(run=run_rkd)


def _register_regionspot(train: argparse._SubParsersAction) -> None:
    from ovdet.methods.regionspot.model import PRIORS
    from ovdet.methods.regionspot.train import RegionSpotTrainConfig
    from ovdet.models.sam import TOKEN_SOURCES
    from ovdet.vocab.prompts import TEMPLATE_SETS

    choices = {"token": TOKEN_SOURCES, "prior": PRIORS, "templates": TEMPLATE_SETS}

    p = train.add_parser(
        "regionspot", help="RegionSpot: train the fusion module on an `ovdet cache` folder"
    )
    p.add_argument("--cache", required=True, help="folder written by `ovdet cache`")
    _add_data_args(p, "the cached set's COCO-format annotations")
    p.add_argument("--clip", default=None, help="CLIP for text (default: the cache's)")
    p.add_argument("--val-cache", default=None, help="cached val set to evaluate at the end")
    p.add_argument("--val-gt", default=None, help="its annotations")
    add_device_arg(p)
    add_dataclass_args(p, RegionSpotTrainConfig, choices=choices)
    p.set_defaults(run=run_regionspot)


def base_ids_of(gt: dict, spec: str | None, source: str = "--gt") -> list[int]:
    """Base category ids: all but the novel ones `spec` names (see --novel), else the file's
    'ovd' field, else all; refused in
    one line when there are none, when the 'ovd' field names unknown ids, or when no annotation
    has a base category (nothing to train on)."""
    ids = [c["id"] for c in gt["categories"]]
    if spec is not None:
        base = sorted(make_split(spec, gt).base)
    else:
        base = (gt.get("ovd") or {}).get("base", ids)
        if not isinstance(base, list) or not set(base) <= set(ids):
            raise OvdetError(
                f"{source}: its ovd.base must list category ids of the file, got {base!r:.80}"
            )
    if not base:
        raise OvdetError(
            f"{source}: --novel {spec} holds out every category; none is left to train on"
            if spec is not None
            else f"{source}: its ovd.base lists no category; name the novel ones with --novel"
        )
    wanted = set(base)
    if not any(a.get("category_id") in wanted for a in gt["annotations"]):
        raise OvdetError(
            f"{source} has no annotation of its {len(base)} base categories: nothing to train on"
        )
    return base


def _one_process(command: str) -> None:
    """Refuse torchrun for a trainer that runs in one process (every process would write the
    same checkpoint)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise OvdetError(
            f"ovdet train {command} runs in one process ({world} were started): run it without "
            "torchrun (train vild, rkd and codet split a batch over processes)"
        )


def run_regionspot(args: argparse.Namespace) -> int:
    from ovdet.methods.regionspot.recognizer import load_regionspot
    from ovdet.methods.regionspot.train import (
        RegionSpotTrainConfig,
        evaluate_cached,
        train_regionspot,
    )
    from ovdet.models.loader import load_model
    from ovdet.train.feature_cache import ShardedCache

    _one_process("regionspot")
    if bool(args.val_cache) != bool(args.val_gt):
        raise OvdetError("--val-cache and --val-gt go together: give both or neither")
    cfg = dataclass_from_args(RegionSpotTrainConfig, args)
    gt = load_gt(args.gt)
    base = base_ids_of(gt, args.novel, args.gt)
    clip_name = args.clip or ShardedCache(args.cache).metadata().get("clip")
    if not clip_name:
        raise OvdetError(f"{args.cache} is not an `ovdet cache` folder (no shards)")
    clip = load_model(clip_name)
    folder = train_regionspot(
        args.cache, gt, args.out, clip, base, cfg, device=args.device
    )  # the CLIP (text embeddings only) stays on the CPU
    Console().print(f"checkpoint: {folder}")
    if args.val_cache:
        model, spec = load_regionspot(folder)
        metrics = evaluate_cached(
            model, spec["token"], args.val_cache, load_gt(args.val_gt), clip, spec["templates"]
        )
        Console().print(metrics)
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from ovdet.data.coco import CocoDetection
    from ovdet.detect.build import SHAPES
    from ovdet.detect.hf_backbone import check_backbone
    from ovdet.methods.vild.detector import load_detector
    from ovdet.methods.vild.model import ViLDConfig
    from ovdet.methods.vild.train import (
        ViLDTrainConfig,
        build_distill_cache,
        train_vild,
        uses_pipeline,
    )
    from ovdet.models.loader import load_model
    from ovdet.train.distributed import init_distributed, main_first
    from ovdet.train.precision import Precision

    if bool(args.val_gt) != bool(args.val_images):
        raise OvdetError("--val-gt and --val-images go together: give both or neither")
    cfg = dataclass_from_args(ViLDTrainConfig, args)
    if cfg.backbone != SHAPES:  # a bad --backbone is one line before any data loads
        check_backbone(cfg.backbone, ["stage4"] if cfg.neck == "c4" else cfg.out_features)
    where = init_distributed(args.device)  # torchrun's processes join here
    uses_pipeline(cfg, where)  # its options' conflicts, before the data loads
    Precision(cfg.precision, torch.device(where.device).type)  # fp16 needs CUDA: say so now
    gt = load_gt(args.gt)
    base = base_ids_of(gt, args.novel, args.gt)
    clip = load_model(args.clip, device=args.device)
    vild = ViLDConfig(
        embed_dim=clip.embed_dim,
        image_weight=args.image_weight,
        ensemble=args.ensemble,
        mask=args.mask,
    )
    cache = None
    if args.image_weight > 0 or args.ensemble:
        if args.proposals is None:
            raise OvdetError(
                "--image-weight and --ensemble need --proposals CHECKPOINT (a base-trained RPN, "
                "e.g. a ViLD-text run)"
            )
        proposer, spec = load_detector(args.proposals, device=args.device)
        dataset = CocoDetection(gt, args.images, spec["base_ids"], cfg.side, short=cfg.short_side)
        folder, m = Path(args.out) / "distill-cache", cfg.distill_proposals
        cache = main_first(where, lambda: build_distill_cache(proposer, clip, dataset, folder, m))
    folder = train_vild(
        gt, args.images, args.out, clip, args.clip, base, vild, cfg, distill=cache,
        device=where.device, where=where,
        stop=(lambda done: done >= args.stop_at) if args.stop_at else None,
    )  # fmt: skip
    if where.main:
        Console().print(f"checkpoint: {folder}")
        _evaluate(args, folder, clip)
    return 0


def _evaluate(args: argparse.Namespace, folder: Path, clip) -> None:
    """Evaluate a ViLD-family checkpoint on --val-gt / --val-images, if given."""
    if not args.val_gt:
        return
    import torch

    from ovdet.eval.recognition import evaluate_detector
    from ovdet.methods.vild.detector import detect_image, load_detector
    from ovdet.vocab.embed import embed_vocabulary
    from ovdet.vocab.parse import vocabulary_from_categories

    model, spec = load_detector(folder, device=getattr(args, "device", "cpu"))
    val = load_gt(args.val_gt)
    cats = sorted(val["categories"], key=lambda c: c["id"])
    text = embed_vocabulary(clip, vocabulary_from_categories(cats), spec["templates"])
    text = text.to(next(model.parameters()).device)  # the CLIP may stay on the CPU
    base = {n.lower() for n in spec["base_names"]}
    novel = torch.tensor([c["name"].lower() not in base for c in cats])
    metrics = evaluate_detector(
        val,
        Path(args.val_images),
        lambda im: detect_image(model, spec, im, text, novel),
        [c["id"] for c in cats],
    )
    Console().print(metrics)


def run_rkd(args: argparse.Namespace) -> int:
    from ovdet.data.captions import CaptionDataset, load_captions
    from ovdet.data.coco import CocoDetection
    from ovdet.methods.rkd.cache import build_pseudo_box_cache, build_region_cache
    from ovdet.methods.rkd.labelers import make_labeler
    from ovdet.methods.rkd.train import RKDTrainConfig, train_rkd
    from ovdet.models.loader import load_model
    from ovdet.train.distributed import init_distributed, main_first
    from ovdet.vocab.embed import embed_vocabulary
    from ovdet.vocab.parse import vocabulary_from_categories

    if bool(args.val_gt) != bool(args.val_images):
        raise OvdetError("--val-gt and --val-images go together: give both or neither")
    if args.no_distill and not args.captions:
        raise OvdetError("--no-distill leaves nothing to learn: give --captions for PIS")
    if args.top_proposals < 1:
        raise OvdetError(f"--top-proposals must be >= 1, got {args.top_proposals}")
    cfg = dataclass_from_args(RKDTrainConfig, args)
    where = init_distributed(args.device)  # torchrun's processes join here
    gt = load_gt(args.gt)
    spec = _init_spec(cfg, gt, args.novel, "RKD")
    clip = load_model(spec["clip"])
    vocab = vocabulary_from_categories(sorted(gt["categories"], key=lambda c: c["id"]))
    labeler = make_labeler(args.pseudo_labeler, vocab, clip, spec["templates"])
    out = Path(args.out)
    if cfg.distill_captions and not args.captions:
        raise OvdetError("--distill-captions distils the caption images: give --captions")

    def regions_of(dataset, name: str):  # noqa: ANN001, ANN202
        """The teacher's region cache of `dataset`, written by the first process alone."""
        folder = out / "cache" / name
        return main_first(
            where, lambda: build_region_cache(labeler, clip, dataset, folder, args.top_proposals)
        )

    regions = None
    if not args.no_distill:
        regions = regions_of(
            CocoDetection(gt, args.images, spec["base_ids"], spec["side"]), "regions"
        )
    pis = {}
    if args.captions:
        images = args.caption_images or str(Path(args.captions).parent)
        captions = CaptionDataset(load_captions(args.captions), images, spec["side"])
        pseudo = out / "cache" / "pseudo"
        pis = {
            "captions": captions,
            "pseudo": main_first(
                where, lambda: build_pseudo_box_cache(labeler, captions, vocab, pseudo)
            ),
            "caption_text": embed_vocabulary(clip, vocab, spec["templates"]),
        }
        if cfg.distill_captions:
            pis["caption_regions"] = regions_of(captions, "regions-captions")
    folder = train_rkd(
        gt, args.images, out, cfg, regions, **pis, clip=clip, device=where.device, where=where,
        stop=(lambda done: done >= args.stop_at) if args.stop_at else None,
    )  # fmt: skip
    if where.main:
        Console().print(f"checkpoint: {folder}")
        _evaluate(args, folder, clip)
    return 0


def _init_spec(cfg, gt: dict, base: str | None, method: str) -> dict:
    """The init checkpoint's spec, refused unless it was trained on this set's base ids."""
    from ovdet.methods.vild.detector import load_detector

    _, spec = load_detector(cfg.init)
    ids = set(base_ids_of(gt, base))
    if ids != set(spec["base_ids"]):
        raise OvdetError(
            f"--init {cfg.init} was trained on base ids {spec['base_ids']}, this set's are "
            f"{sorted(ids)}: {method} fine-tunes on the same base categories"
        )
    return spec


def run_codet(args: argparse.Namespace) -> int:
    from ovdet.data.captions import CaptionDataset, load_captions
    from ovdet.methods.codet.concepts import ConceptIndex
    from ovdet.methods.codet.train import CoDetTrainConfig, train_codet
    from ovdet.models.loader import load_model
    from ovdet.train.distributed import init_distributed
    from ovdet.vocab.embed import embed_vocabulary
    from ovdet.vocab.parse import parse_vocabulary, vocabulary_from_categories

    if bool(args.val_gt) != bool(args.val_images):
        raise OvdetError("--val-gt and --val-images go together: give both or neither")
    cfg = dataclass_from_args(CoDetTrainConfig, args)
    gt = load_gt(args.gt)
    concepts = (
        parse_vocabulary(args.concepts)
        if args.concepts is not None  # given empty: refused, not the default
        else vocabulary_from_categories(sorted(gt["categories"], key=lambda c: c["id"]))
    )
    items = load_captions(args.captions)
    index = ConceptIndex.build(items, concepts)
    index.require(cfg.group_size)  # fail before any model loads
    where = init_distributed(args.device)  # torchrun's processes join here
    spec = _init_spec(cfg, gt, args.novel, "CoDet")
    clip = load_model(spec["clip"])
    images = args.caption_images or str(Path(args.captions).parent)
    captions = CaptionDataset(items, images, spec["side"])
    caption_text = clip.encode_text([item.captions[0] for item in items]).float().cpu().clone()
    concept_text = embed_vocabulary(clip, concepts, spec["templates"]).clone()
    folder = train_codet(
        gt, args.images, args.out, cfg, captions, index, concept_text, caption_text, clip=clip,
        device=where.device, where=where,
        stop=(lambda done: done >= args.stop_at) if args.stop_at else None,
    )  # fmt: skip
    if where.main:
        Console().print(f"checkpoint: {folder}")
        _evaluate(args, folder, clip)
    return 0
