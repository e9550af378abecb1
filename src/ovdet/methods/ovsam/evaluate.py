"""Open-Vocabulary SAM's table, on the shapes world's det-val or on any COCO-format set with
instance masks: per GT object, prompted by its box or by an interior point, the top-1 name
(all / base / novel classes) and the mask IoU (all / base / novel), for image-crop (frozen CLIP
on the box crop, the baseline SAM's mask), feature-crop (frozen CLIP's dense map pooled in the
region, the baseline SAM's mask), SAM2CLIP alone (feature-crop's names, masks from the baseline
SAM's frozen decoder on the adapter's embeddings), the head alone, and OV-SAM (the ensemble, its
own decoder)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

PROMPTS = ("box", "point")
Scene = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # image, (n, H, W) masks, (n,) classes


def shapes_scenes(count: int, world_seed: int = 0) -> Iterator[Scene]:
    """det-val's first `count` rendered scenes: (3, H, W) uint8 image, the visible objects'
    (n, H, W) masks and (n,) category indices into `shapes_vocabulary()`."""
    from ovdet.data.shapes.generate import WorldConfig, scene_for

    world = WorldConfig(seed=world_seed)
    for i in range(count):
        scene = scene_for(world.seed, "det-val", i, world)
        keep = [k for k, m in enumerate(scene.masks) if m.any()]
        image = torch.from_numpy(scene.image).permute(2, 0, 1)
        masks = torch.from_numpy(np.stack([scene.masks[k] for k in keep])) if keep else None
        yield image, masks, torch.tensor([scene.objects[k].category for k in keep])


def coco_scenes(gt: dict[str, Any], images_dir: str | Path) -> Iterator[Scene]:
    """Every image of a COCO-format set with its annotations' masks (polygons or RLE; empty and
    crowd ones left out) and category indices into its categories sorted by id."""
    from ovdet.eval.recognition import region_annotations
    from ovdet.io.images import load_image
    from ovdet.ops.masks import annotation_mask

    order = {c["id"]: k for k, c in enumerate(sorted(gt["categories"], key=lambda c: c["id"]))}
    by_image = region_annotations(gt)  # non-crowd, in file order
    for im in gt["images"]:
        image = load_image(Path(images_dir) / im["file_name"])
        h, w = image.shape[-2:]
        anns = [a for a in by_image[im["id"]] if a.get("segmentation")]
        masks = [annotation_mask(a["segmentation"], h, w) for a in anns]
        kept = [(m, order[a["category_id"]]) for m, a in zip(masks, anns, strict=True) if m.any()]
        stacked = torch.stack([m for m, _ in kept]) if kept else None
        yield image, stacked, torch.tensor([c for _, c in kept], dtype=torch.int64)


@torch.inference_mode()
def evaluate_ovsam(
    model: Any,
    sam: Any,
    count: int = 500,
    world_seed: int = 0,
    progress: bool = True,
    baselines: bool = True,
):
    """The shapes world's table: `evaluate_scenes` on det-val's first `count` scenes."""
    from ovdet.methods.ovsam.clip2sam import shapes_vocabulary

    vocab, novel = shapes_vocabulary()
    scenes = shapes_scenes(count, world_seed)
    return evaluate_scenes(model, sam, scenes, vocab, novel, count, progress, baselines)


@torch.inference_mode()
def evaluate_scenes(
    model: Any,
    sam: Any,
    scenes: Iterable[Scene],
    vocab: Any,
    novel: torch.Tensor,
    count: int,
    progress: bool = True,
    baselines: bool = True,
    prompts: tuple[str, ...] = PROMPTS,
):
    """`model` an `OVSam`, `sam` the SAM backend of the crop baselines, `scenes` (image, masks,
    classes indexing `vocab`; `novel` (C,) marks the novel classes) -> rows of {"all", "base",
    "novel" (top-1 accuracy), "mIoU", "mIoU_base", "mIoU_novel"} per (prompt, method), None
    where a group has no objects; and seconds per image (all rows together). `baselines=False`
    leaves out the image-crop and SAM2CLIP-alone rows and their passes; `prompts` picks box
    and/or point prompts."""
    unknown = set(prompts) - set(PROMPTS)
    if not prompts or unknown:
        raise ValueError(f"prompts must be some of {PROMPTS}, got {prompts!r}")
    from ovdet.methods.ovsam.sam2clip import load_sam2clip
    from ovdet.ops.masks import interior_points, mask_iou, masks_to_boxes, point_region_boxes
    from ovdet.recognize.core import class_probabilities
    from ovdet.recognize.crop import CropEmbedder

    device = model.backend.device
    alone = load_sam2clip(model.sam2clip, device=device)[0] if baselines else None
    crops = CropEmbedder(model.clip, scales=(1.0,))  # the box crop alone
    text = model.text.embed(vocab)
    hits: dict[tuple[str, str], list] = {}
    ious: dict[tuple[str, str], list] = {}
    flags: list[torch.Tensor] = []
    start = time.perf_counter()
    for image, truth, cats in tqdm(
        scenes, total=count, desc="ovsam eval", unit="img", disable=not progress
    ):
        if truth is None:
            continue
        gt_boxes = masks_to_boxes(truth).float()
        points = interior_points(truth)
        flags.append(novel[cats])
        backends = (sam, alone, model.backend) if baselines else (sam, model.backend)
        states = {b: b.set_image(image) for b in backends}
        for prompt in prompts:
            masks, boxes = {}, {}
            for b, state in states.items():
                if prompt == "box":
                    masks[b], boxes[b] = b.predict_boxes(state, gt_boxes).masks, gt_boxes
                else:
                    masks[b] = b.point_masks(state, points)
                    boxes[b] = point_region_boxes(masks[b], points, 4)
            ours = states[model.backend]  # its CLIP levels: read, not computed again
            feature = model.probabilities(image, boxes[sam], vocab, ours)["clip"]
            p = model.probabilities(image, boxes[model.backend], vocab, ours)
            our_masks = masks[model.backend]
            named = [("feature-crop", feature, masks[sam])]
            if baselines:
                crop = class_probabilities(
                    crops.embed(image, boxes[sam]), text, model.clip.logit_scale
                )
                alone_names = model.probabilities(image, boxes[alone], vocab, ours)["clip"]
                named = [("image-crop", crop, masks[sam]), *named,
                         ("SAM2CLIP alone", alone_names, masks[alone])]  # fmt: skip
            named += [("head only", p["head"], our_masks), ("OV-SAM", p["ovsam"], our_masks)]
            for name, probs, masks_of in named:
                hits.setdefault((prompt, name), []).append(probs.argmax(1) == cats)
                ious.setdefault((prompt, name), []).append(mask_iou(masks_of, truth))
    seconds = (time.perf_counter() - start) / count
    is_novel = torch.cat(flags)
    rows = {}
    for key, h in hits.items():
        h, iou = torch.cat(h).float(), torch.cat(ious[key]).float()
        rows[key] = {
            "all": float(h.mean()),
            "base": _mean_or_none(h[~is_novel]),
            "novel": _mean_or_none(h[is_novel]),
            "mIoU": float(iou.mean()),
            "mIoU_base": _mean_or_none(iou[~is_novel]),
            "mIoU_novel": _mean_or_none(iou[is_novel]),
        }
    return rows, seconds


def _mean_or_none(x: torch.Tensor) -> float | None:
    """The mean of `x`, or None when it is empty (no object of that group was drawn)."""
    return float(x.mean()) if len(x) else None
