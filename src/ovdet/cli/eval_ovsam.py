"""`ovdet eval-ovsam --gt instances.json --images DIR --model RUN`: Open-Vocabulary SAM's protocol
on any COCO-format set with instance masks: each object prompted by its box and by a point
inside its mask (--prompt box|point|both), named among the file's categories (top-1, all / base
/ novel) and segmented (mask IoU), beside the feature-crop baseline (and, with --baselines,
image-crop and SAM2CLIP alone) on the same prompts; a table, and JSON with --out."""

from __future__ import annotations

import argparse

from ovdet.cli.common import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-ovsam",
        help="Open-Vocabulary SAM on a COCO-format set: names and masks from GT boxes and points",
    )
    p.add_argument("--gt", required=True, help="COCO instances JSON (masks: polygons or RLE)")
    p.add_argument("--images", required=True, help="the folder its file_names are relative to")
    p.add_argument("--model", required=True, help="a CLIP2SAM run (or bundled name)")
    p.add_argument("--sam", default="shapes-sam", help="the feature-crop baseline's SAM")
    p.add_argument(
        "--novel",
        default=None,
        help='novel categories (names/ids, "lvis", "coco-ovd"); default: the file\'s ovd field',
    )
    p.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also image-crop and SAM2CLIP alone (two more passes per image)",
    )
    p.add_argument(
        "--prompt",
        choices=("box", "point", "both"),
        default="both",
        help="prompt each object by its box, by a point inside its mask, or both (default)",
    )
    p.add_argument("--out", default=None, help="also write the table to this JSON file")
    add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ovdet.cli.ovsam_table import print_ovsam_table
    from ovdet.errors import OvdetError
    from ovdet.eval.data import load_gt, make_split
    from ovdet.io.atomic import write_json
    from ovdet.methods.ovsam.clip2sam import OVSam
    from ovdet.methods.ovsam.evaluate import coco_scenes, evaluate_scenes
    from ovdet.models.sam import SamBackend
    from ovdet.vocab.parse import vocabulary_from_categories

    gt = load_gt(args.gt, iou_type="segm")  # every annotation needs a segmentation
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    split = make_split(args.novel, gt)
    novel_ids = split.novel if split is not None else set((gt.get("ovd") or {}).get("novel", []))
    unknown = set(novel_ids) - {c["id"] for c in cats}
    if unknown:
        raise OvdetError(f"{args.gt}: its ovd.novel names ids {sorted(unknown)} it does not have")
    novel = torch.tensor([c["id"] in novel_ids for c in cats])
    model = OVSam(args.model, device=args.device)
    rows, seconds = evaluate_scenes(
        model,
        SamBackend.from_pretrained(args.sam, device=args.device),
        coco_scenes(gt, args.images),
        vocabulary_from_categories(cats),
        novel,
        len(gt["images"]),
        baselines=args.baselines,
        prompts=("box", "point") if args.prompt == "both" else (args.prompt,),
    )
    listed = [{"prompt": p, "method": m, **r} for (p, m), r in rows.items()]
    print_ovsam_table(listed, f"{args.gt}, {len(gt['images'])} images, {seconds:.2f} s/image")
    if args.out:
        write_json(args.out, {"rows": listed, "s_per_image": seconds})
    return 0
