"""The start every ViLD-text fine-tuning method shares (RKD, CoDet): the init checkpoint's
detector rebuilt under the new method's spec, its weights loaded, backbone and RPN frozen, and
the detection dataset on the init's base categories; and how their steps split over processes
(`process_share`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, TypeVar

import torch

from ovdet.data.coco import CocoDetection
from ovdet.data.pipeline import share
from ovdet.errors import OvdetError
from ovdet.methods.vild.detector import build_model, load_detector
from ovdet.methods.vild.model import ViLD, ViLDConfig
from ovdet.models.bundled import checkpoint_folder
from ovdet.models.loader import load_model
from ovdet.models.vlm import VisionLanguageModel
from ovdet.train.distributed import Distributed
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories

T = TypeVar("T")
Share = Callable[[int, list[T]], tuple[list[T], list[torch.Generator] | None]]


def process_share(spec: dict[str, Any], where: Distributed, seed: int) -> Share:
    """(step, the step's drawn items) -> this process's contiguous part and a sampler for each
    item, seeded by its place in the global list (`data.pipeline.share`), so several processes
    train what one process taking all of it trains. That holds with a transformers backbone or
    several processes; the shapes world's backbone in one process keeps every item and torch's
    global generator (samplers None), on which its reproductions' tables were measured."""
    if not (where.active or "backbone" in spec):
        return lambda step, drawn: (drawn, None)
    return lambda step, drawn: share(drawn, seed, step, where.rank, where.world)


def fine_tune_start(
    init: str,
    seed: int,
    gt: dict[str, Any],
    images_dir: str | os.PathLike,
    kind: str,
    fields: dict[str, Any],
    clip: VisionLanguageModel | None = None,
    roi_batch: int = 0,
    train_backbone: bool = False,
    **vild_changes: Any,
) -> tuple[ViLD, dict[str, Any], CocoDetection]:
    """(model, spec, dataset) of a run of method `kind` that fine-tunes checkpoint `init`.

    The spec is the init's (less its `train` record) with `kind`, the ViLD-text config (no image
    loss, no ensemble, plus `vild_changes`; `roi_batch` RoIs sampled per detection image, 0 for
    the init's), the init's folder and `{kind: fields}`. The base
    classes' text embeddings come from `clip` (default: the init's CLIP by name; a checkpoint
    does not store them). Only modules the init lacks may start fresh (`transfer.`).
    """
    source, init_spec = load_detector(init)
    vild = replace(ViLDConfig(**init_spec["vild"]), image_weight=0.0, ensemble=False)
    if roi_batch:
        vild = replace(vild, roi_batch=roi_batch)
    spec = {
        **{k: v for k, v in init_spec.items() if k != "train"},
        "kind": kind,
        "vild": asdict(replace(vild, **vild_changes)),
        "init": str(checkpoint_folder(init)),
        kind: fields,
    }
    by_id = {c["id"]: c for c in gt["categories"]}
    missing_ids = [i for i in init_spec["base_ids"] if i not in by_id]
    if missing_ids:
        raise OvdetError(f"{init}'s base categories {missing_ids} are not in the dataset")
    base_vocab = vocabulary_from_categories([by_id[i] for i in init_spec["base_ids"]])
    base_text = embed_vocabulary(
        clip or load_model(init_spec["clip"]), base_vocab, spec["templates"]
    )
    torch.manual_seed(seed)
    model = build_model(spec, base_text)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not k.startswith("transfer.") for k in missing):
        raise OvdetError(f"{init} does not fit this detector: {missing or unexpected}")
    model.backbone.requires_grad_(train_backbone)
    model.rpn.requires_grad_(train_backbone)
    body = getattr(model.backbone, "body", None)
    if train_backbone and hasattr(body, "freeze_stages"):  # a pretrained backbone's early
        body.freeze_stages()  # stages stay frozen (its freeze_at)
    if model.mask_head is not None:  # no method fine-tunes on masks: the init's head is kept
        model.mask_head.requires_grad_(False)
    dataset = CocoDetection(gt, images_dir, init_spec["base_ids"], init_spec["side"])
    return model, spec, dataset
