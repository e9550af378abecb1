"""RKD's distillation under other classification forms and loss weights, in the shapes world.

Each variant fine-tunes the bundled `shapes-vild-text` as `ovdet shapes reproduce-rkd` does (400
steps, batch 8, the first 1,500 det-train images, the stand-in's top-5 proposals as the distilled
regions) and is evaluated on det-val-uniform (LVIS protocol; AP_r = novel AP). A variant is
`form:l1:irm[:pis]`: the classification form (`softmax`: ViLD's learned background; `sigmoid`:
the official code's per-class BCE), the L1 weight (0: no distillation), the IRM weight, and
optionally `pis` (pseudo-box image-level supervision from the first 1,500 det-captions scenes) or
`pis+captions` (PIS, with the caption scenes' stand-in proposals distilled in its batches too).

    python benchmarks/rkd_variants.py --data data/shapes --out runs/rkd-variants \
        --variants softmax:0:0,sigmoid:0:0,sigmoid:15:0,sigmoid:1.5:0,softmax:1.5:0,sigmoid:15:1.5

Every row is appended to `out/variants.jsonl` as it finishes; `--device cuda` trains on a GPU;
`--train-backbone` trains the backbone and RPN too in every variant (the official setting).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.data.coco import CocoDetection
from ovdet.experiments.vild import FineTuneWorld
from ovdet.methods.rkd.cache import build_pseudo_box_cache, build_region_cache
from ovdet.methods.rkd.labelers import make_labeler
from ovdet.methods.rkd.train import RKDTrainConfig, train_rkd
from ovdet.models.loader import load_model
from ovdet.vocab.parse import vocabulary_from_categories

PIS_CHOICES = ("", "pis", "pis+captions")


def parse_variant(text: str) -> tuple[str, float, float, str]:
    """E.g. "sigmoid:15:1.5" -> ("sigmoid", 15.0, 1.5, ""), "softmax:15:15:pis" -> (..., "pis")."""
    parts = text.split(":")
    pis = parts[3] if len(parts) == 4 else ""
    if len(parts) not in (3, 4) or pis not in PIS_CHOICES:
        raise SystemExit(f"a variant is form:l1:irm[:pis|:pis+captions], got {text!r}")
    return parts[0], float(parts[1]), float(parts[2]), pis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/shapes")
    ap.add_argument("--out", default="runs/rkd-variants")
    ap.add_argument("--variants", default="softmax:0:0,softmax:15:0,sigmoid:0:0,sigmoid:15:0")
    ap.add_argument("--train-images", type=int, default=1500)
    ap.add_argument("--caption-images", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=RKDTrainConfig.steps)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-backbone", action="store_true", help="train the backbone and RPN too")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [parse_variant(v) for v in args.variants.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cfg = RKDTrainConfig(
        steps=args.steps, checkpoint_every=max(1, args.steps), train_backbone=args.train_backbone
    )
    clip = load_model("shapes-clip")
    world = FineTuneWorld.load(
        Path(args.data), cfg.init, clip, args.train_images, ("det-val-uniform",)
    )
    spec = world.spec
    vocab = vocabulary_from_categories(sorted(world.train_gt["categories"], key=lambda c: c["id"]))
    dataset = CocoDetection(world.train_gt, world.images, spec["base_ids"], spec["side"])
    stand_in = make_labeler("shapes", vocab, clip, spec["templates"])
    regions = build_region_cache(stand_in, clip, dataset, out / "cache" / "regions-stand-in")
    pis_kw: dict = {}
    if any(v[3] for v in variants):
        items = load_captions(Path(args.data) / "det-captions" / "captions.json")
        captions = CaptionDataset(
            items[: args.caption_images], Path(args.data) / "det-captions", spec["side"]
        )
        pis_kw = {
            "captions": captions,
            "pseudo": build_pseudo_box_cache(stand_in, captions, vocab, out / "cache" / "pseudo"),
            "caption_text": world.text,
        }
    caption_regions = None
    if any(v[3] == "pis+captions" for v in variants):
        folder = out / "cache" / "regions-captions"
        caption_regions = build_region_cache(stand_in, clip, pis_kw["captions"], folder)

    for form, l1, irm, pis in variants:
        name = f"{form}:{l1:g}:{irm:g}" + (f":{pis}" if pis else "")
        c = replace(
            cfg,
            classification=form,
            l1_weight=l1 or cfg.l1_weight,
            irm_weight=irm,
            distill_captions=pis == "pis+captions",
        )
        start = time.perf_counter()
        folder = train_rkd(
            world.train_gt,
            world.images,
            out / name.replace(":", "_").replace("+", "-"),
            c,
            regions=regions if l1 > 0 else None,
            clip=clip,
            device=args.device,
            **(pis_kw if pis else {}),
            caption_regions=caption_regions if pis == "pis+captions" else None,
        )
        row = {"variant": name, "train_s": round(time.perf_counter() - start, 1)}
        row |= world.evaluate(folder)["det-val-uniform"]
        print(json.dumps(row), flush=True)
        with open(out / "variants.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
