"""RegionSpot's tables in the shapes world: GT-box region recognition on det-val (LVIS protocol).

Rows: CLIP on box crops, CLIP on SAM-mask crops (pixels outside the box-prompted SAM mask set to
CLIP's mean colour), dense RoI (one CLIP pass, RoIAlign), and RegionSpot with its ablations
(CLIP features: none / feature map / + class token; token after the prompt encoder /
transformer / MLP; depth 1 / 3 / 6; and ovdet's optional attention prior from the SAM mask or
the box), each trained
on det-train's base categories from one shared cache. Seconds per image: end to end for the
baselines; for RegionSpot rows, the measured SAM + CLIP feature time per image (the cache build
of det-val) plus the row's own module time. Writes results.json and results.png (bars).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ovdet.eval.data import load_gt
from ovdet.eval.recognition import clip_box_scorer, evaluate_recognizer
from ovdet.eval.report import save_method_bars
from ovdet.experiments.vild import eval_splits, evaluate_on_splits, with_style
from ovdet.io.atomic import atomic_open, write_json
from ovdet.methods.regionspot.recognizer import (
    FeatureExtractor,
    RegionSpotRecognizer,
    load_regionspot,
)
from ovdet.methods.regionspot.train import (
    RegionSpotTrainConfig,
    build_cache,
    evaluate_cached,
    text_embeddings,
    train_regionspot,
)
from ovdet.models.sam import SamBackend
from ovdet.models.vlm import VisionLanguageModel
from ovdet.recognize.core import class_probabilities
from ovdet.recognize.crop import CropEmbedder

log = logging.getLogger(__name__)


# name -> changes to the default RegionSpot configuration
ABLATIONS: dict[str, dict[str, Any]] = {
    "RegionSpot (token after transformer, depth 3, feature map + class token)": {},
    "w/o CLIP (SAM token only)": {"feature_map": False, "class_token": False},
    "+ feature map (no class token)": {"class_token": False},
    "token after prompt encoder": {"token": "prompt"},
    "token after MLP": {"token": "mlp"},
    "depth 1": {"depth": 1},
    "depth 6": {"depth": 6},
    "+ attention prior from the SAM mask": {"prior": "mask"},
    "+ attention prior from the box": {"prior": "box"},
}


def masked_crop_scorer(
    clip: VisionLanguageModel, sam: SamBackend, text: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """CLIP on box crops of the image with pixels outside each box's SAM mask set to the mean."""
    crops = CropEmbedder(clip)
    mean = (clip.mean.cpu().view(3, 1, 1) * 255).round().to(torch.uint8)

    def score(image: torch.Tensor, xyxy: torch.Tensor) -> torch.Tensor:
        masks = sam.predict_boxes(sam.set_image(image), xyxy).masks
        emb = torch.cat(
            [
                crops.embed(torch.where(m[None], image, mean), box[None])
                for m, box in zip(masks, xyxy, strict=True)
            ]
        )
        return class_probabilities(emb.cpu(), text, clip.logit_scale)

    return score


def reproduce_regionspot(
    data: str | Path,
    out: str | Path,
    sam: SamBackend,
    clip: VisionLanguageModel,
    names: dict[str, str],
    cfg: RegionSpotTrainConfig,
    clip_size: int | None = None,
) -> dict[str, dict[str, float]]:
    """Cache det-train and det-val, run the baselines, train and evaluate every ablation."""
    data, out = Path(data), Path(out)
    train_gt = load_gt(data / "det-train" / "annotations.json")
    splits = eval_splits(data)
    val_gt = splits["det-val"][0]
    extractor = FeatureExtractor(sam, clip, clip_size)
    build_cache(train_gt, data / "det-train", out / "cache-train", extractor, names)
    start = time.perf_counter()
    build_cache(val_gt, data / "det-val", out / "cache-val", extractor, names)
    cached = out / "cache-val" / "feature_seconds.txt"
    if not cached.is_file():  # measured once, when the val cache is first built
        with atomic_open(cached) as f:
            f.write(f"{(time.perf_counter() - start) / len(val_gt['images']):.5f}")
    feature_s = float(cached.read_text())
    caches = {"det-val": out / "cache-val"}
    if "det-style" in splits:
        caches["det-style"] = out / "cache-style"
        build_cache(
            splits["det-style"][0], data / "det-style", caches["det-style"], extractor, names
        )

    cats = sorted(val_gt["categories"], key=lambda c: c["id"])
    text = text_embeddings(clip, cats, cfg.templates)
    scorers = {
        "CLIP on box crops": clip_box_scorer(clip, text, "crop"),
        "CLIP on SAM-mask crops": masked_crop_scorer(clip, sam, text),
        "dense RoI (one CLIP pass)": clip_box_scorer(clip, text, "dense", clip_size),
    }
    results: dict[str, dict[str, Any]] = {
        name: with_style({s: evaluate_recognizer(gt, im, score) for s, (gt, im) in splits.items()})
        for name, score in scorers.items()
    }
    write_json(out / "results.json", results, indent=1)
    base = train_gt.get("ovd", {}).get("base", [c["id"] for c in cats])
    for i, (name, change) in enumerate(ABLATIONS.items()):
        folder = train_regionspot(
            out / "cache-train",
            train_gt,
            out / f"regionspot-{i}",
            clip,
            base,
            replace(cfg, **change),
        )
        model, spec = load_regionspot(folder)
        rows = {}
        for split, cache in caches.items():
            start = time.perf_counter()
            gt = splits[split][0]
            metrics = evaluate_cached(model, spec["token"], cache, gt, clip, cfg.templates)
            module_s = (time.perf_counter() - start) / len(gt["images"])
            rows[split] = metrics | {"s_per_image": round(feature_s + module_s, 4)}
        results[name] = with_style(rows) | {"checkpoint": str(folder)}
        log.info("%s: %s", name, results[name])
        write_json(out / "results.json", results, indent=1)
    main = results[next(iter(ABLATIONS))]["checkpoint"]
    results |= detection_rows(RegionSpotRecognizer(main, sam=sam, clip=clip), splits)
    write_json(out / "results.json", results, indent=1)
    save_method_bars(results, out / "results.png")
    return results


def detection_rows(
    spot: RegionSpotRecognizer, splits: dict[str, tuple[dict[str, Any], Path]]
) -> dict[str, dict[str, Any]]:
    """Detection without GT boxes (the paper's GLIP-T rows): the bundled shapes-vild alone, and
    RegionSpot naming shapes-vild's boxes or SAM's everything-mode proposals."""
    from ovdet.methods.vild.detector import detect_image, load_detector
    from ovdet.models.loader import load_model
    from ovdet.models.sam_everything import EverythingConfig
    from ovdet.vocab.embed import embed_vocabulary
    from ovdet.vocab.parse import vocabulary_from_categories

    cats = sorted(splits["det-val"][0]["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    vild, vspec = load_detector("shapes-vild")
    vocab = vocabulary_from_categories(cats)
    vtext = embed_vocabulary(load_model(vspec["clip"]), vocab, vspec["templates"])
    novel = vocab.novel_mask(vspec["base_names"])
    text = spot.text_embeddings(vocab)
    grid = EverythingConfig(points_per_side=16)

    def vild_boxes(image: torch.Tensor):
        return detect_image(vild, vspec, image, vtext, novel)

    def on_vild(image: torch.Tensor):
        r = vild_boxes(image)
        return spot.detect(image, text, r.xyxy, r.scores, labels_per_box=3)

    rows = {
        "detection: shapes-vild alone (its boxes and labels)": vild_boxes,
        "detection: RegionSpot on shapes-vild's boxes": on_vild,
        "detection: RegionSpot on SAM everything-mode proposals": lambda image: spot.detect(
            image, text, everything=grid, labels_per_box=3
        ),
    }
    return {name: evaluate_on_splits(splits, fn, ids) for name, fn in rows.items()}
