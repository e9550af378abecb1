"""Region-recognition evaluation (RegionCLIP / RegionSpot protocol): ground-truth boxes are the
proposals, every box is scored against every class, and the top labels of each box become
separate detections that the COCO or LVIS protocol then scores.

Default: every class is kept for every box (`labels_per_box=None`) and the protocol's own budget
selects the best (LVIS: 300 per image across classes), as in detectron2's RegionCLIP inference
with ground-truth boxes. Keeping only the top-1 label per box under-reports AP, since AP rewards a
correct label ranked second over a missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ovdet.io.images import load_image
from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import clip_boxes, xywh_to_xyxy
from ovdet.recognize.core import class_probabilities
from ovdet.recognize.crop import CropEmbedder
from ovdet.recognize.dense import DenseEmbedder
from ovdet.types import Regions


def recognition_detections(
    image_id: Any,
    image_size: tuple[int, int],
    xyxy: torch.Tensor,
    class_scores: torch.Tensor,
    category_ids: Sequence[int],
    labels_per_box: int | None = None,
) -> list[dict[str, Any]]:
    """Boxes with (N, C) class scores -> COCO detections, the top `labels_per_box` labels per box.

    Args:
        image_id: the image's id.
        image_size: its (H, W).
        xyxy: (N, 4) boxes in pixels.
        class_scores: (N, C) scores; column j is category `category_ids[j]`.
        category_ids: C category ids.
        labels_per_box: labels kept per box; None keeps all C.
    """
    from ovdet.io.coco import regions_to_coco

    n, c = class_scores.shape
    if c != len(category_ids) or xyxy.shape[0] != n:
        raise ValueError(
            f"got {tuple(xyxy.shape)} boxes, {tuple(class_scores.shape)} scores, "
            f"{len(category_ids)} ids"
        )
    regions = Regions(xyxy, image_size, data={"class_scores": class_scores.float()})
    k = c if labels_per_box is None else labels_per_box
    return regions_to_coco(regions.topk_labels(k), image_id, category_ids, rounded=False)


def clip_box_scorer(
    model: VisionLanguageModel, text: torch.Tensor, method: str, dense_size: int | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A `score_boxes` for `recognize_dataset`: CLIP crops or one dense pass, softmax over `text`.

    Args:
        model: the vision-language model.
        text: (C, D) class embeddings.
        method: "crop" or "dense".
        dense_size: input side of the dense pass (default: the model's).
    """
    rec = CropEmbedder(model) if method == "crop" else DenseEmbedder(model, dense_size)

    def score(image: torch.Tensor, xyxy: torch.Tensor) -> torch.Tensor:
        return class_probabilities(rec.embed(image, xyxy).cpu(), text, model.logit_scale)

    return score


def region_annotations(gt: dict[str, Any]) -> dict[Any, list[dict[str, Any]]]:
    """image id -> its non-crowd annotations with a positive-size box, in file order."""
    out: dict[Any, list[dict[str, Any]]] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0:
            out[a["image_id"]].append(a)
    return out


def gt_boxes_by_image(gt: dict[str, Any]) -> dict[Any, torch.Tensor]:
    """image id -> (N, 4) xyxy boxes of its `region_annotations`, clipped to the image."""
    sizes = {im["id"]: (im.get("height"), im.get("width")) for im in gt["images"]}
    out = {}
    for image_id, anns in region_annotations(gt).items():
        b = [a["bbox"] for a in anns]
        xyxy = xywh_to_xyxy(torch.tensor(b, dtype=torch.float32).reshape(-1, 4))
        h, w = sizes[image_id]
        out[image_id] = clip_boxes(xyxy, (h, w)) if h and w else xyxy
    return out


def recognize_dataset(
    gt: dict[str, Any],
    images_dir: str | Path,
    score_boxes: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    labels_per_box: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run a recognizer on every image's ground-truth boxes -> detections for `evaluate_detections`.

    Args:
        gt: the dataset; its categories, sorted by id, are the vocabulary's order.
        images_dir: folder the images' `file_name`s are relative to.
        score_boxes: (3, H, W) uint8 image, (N, 4) xyxy -> (N, C) class scores.
        labels_per_box: see `recognition_detections`.
    """
    category_ids = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    boxes = gt_boxes_by_image(gt)
    dets: list[dict[str, Any]] = []
    for im in tqdm(gt["images"], desc="recognise", unit="img", disable=not progress):
        xyxy = boxes[im["id"]]
        keep = ((xyxy[:, 2] - xyxy[:, 0]) >= 1) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1)
        xyxy = xyxy[keep]
        if len(xyxy) == 0:
            continue
        image = load_image(Path(images_dir) / im["file_name"])
        scores = score_boxes(image, xyxy)
        dets += recognition_detections(
            im["id"], tuple(image.shape[-2:]), xyxy, scores, category_ids, labels_per_box
        )
    return dets


def detect_dataset(
    gt: dict[str, Any],
    images_dir: str | Path,
    detect: Callable[[torch.Tensor], Any],
    category_ids: list[int],
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run `detect(image) -> Regions` on every image of `gt` -> COCO results (labels index
    `category_ids`), for `evaluate_detections`."""
    from ovdet.io.coco import regions_to_coco

    dets: list[dict[str, Any]] = []
    for im in tqdm(gt["images"], desc="evaluate", unit="img", disable=not progress):
        regions = detect(load_image(Path(images_dir) / im["file_name"]))
        dets += regions_to_coco(regions, im["id"], category_ids)
    return dets


def evaluate_detector(
    gt: dict[str, Any],
    images_dir: str | Path,
    detect: Callable[[torch.Tensor], Any],
    category_ids: list[int],
) -> dict[str, float]:
    """One table row for a detector: `detect(image) -> Regions` on every image of `gt`, scored
    with the LVIS protocol (AP, AP50, AP_r/c/f and seconds per image) when every category has a
    frequency, else with COCO's (AP, AP50, AP75)."""
    from ovdet.eval.detection import protocol_of, timed_lvis_row

    return timed_lvis_row(
        gt,
        lambda: detect_dataset(gt, images_dir, detect, category_ids),
        protocol=protocol_of(gt),
    )


def evaluate_recognizer(
    gt: dict[str, Any],
    images_dir: str | Path,
    score_boxes: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """One table row for a recognizer: `score_boxes(image, (N, 4) boxes) -> (N, C)` on the
    ground-truth boxes of every image of `gt`, scored with the LVIS protocol."""
    from ovdet.eval.detection import timed_lvis_row

    return timed_lvis_row(
        gt,
        lambda: recognize_dataset(gt, images_dir, score_boxes),
        lambda dets: {"top1": box_top1(gt, dets)},
    )


def box_top1(gt: dict[str, Any], dets: list[dict[str, Any]]) -> float:
    """% of ground-truth boxes whose best-scored detection on that same box (IoU >= 0.99) has
    the box's category: the recogniser's first choice, which AP over all labels does not show.
    A box with no detection on it counts as wrong."""
    from ovdet.ops.boxes import box_iou

    by_image: dict[Any, list[dict[str, Any]]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d)
    boxes = gt_boxes_by_image(gt)
    right = total = 0
    for image_id, anns in region_annotations(gt).items():
        total += len(anns)
        mine = by_image.get(image_id)
        if not anns or not mine:
            continue
        xyxy = xywh_to_xyxy(torch.tensor([d["bbox"] for d in mine], dtype=torch.float32))
        scores = torch.tensor([float(d["score"]) for d in mine])
        cats = torch.tensor([int(d["category_id"]) for d in mine])
        on_box = box_iou(boxes[image_id], xyxy) >= 0.99  # (G, D)
        best = torch.where(on_box, scores, -1.0).argmax(1)
        found = on_box.any(1)
        truth = torch.tensor([a["category_id"] for a in anns])
        right += int((found & (cats[best] == truth)).sum())
    return 100.0 * right / max(1, total)
