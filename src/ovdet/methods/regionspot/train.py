"""RegionSpot on cached frozen features: build the SAM + CLIP cache, train the fusion module.

The cache (`ShardedCache`) holds per image: the annotated boxes and category ids, SAM's three
position-aware token variants per box (after the prompt encoder, the two-way transformer and the
MLP), CLIP's feature map and image embedding of the whole letterboxed image (float16), and the
scale from image pixels to the letterbox side. Training reads single images from memory-mapped
shards, so a cache larger than memory trains as well.

A checkpoint folder holds `spec.json` (module config, SAM and CLIP names, CLIP input side,
templates, token source, base vocabulary), `model.safetensors` and `train_state.pt`, the one-file
resume unit (see `train.common`). Step k's batch is drawn from (seed, k) alone, so a run killed at
any moment resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ovdet.errors import ImageError, OvdetError
from ovdet.eval.recognition import gt_boxes_by_image, region_annotations
from ovdet.io.images import load_image
from ovdet.losses.vild import sigmoid_focal_loss
from ovdet.methods.regionspot.model import RegionSpot, RegionSpotConfig
from ovdet.methods.regionspot.recognizer import FeatureExtractor
from ovdet.models.sam import TOKEN_SOURCES
from ovdet.models.vlm import VisionLanguageModel
from ovdet.train.common import check_batch_size, flushes_denormals, train_resumable, warmup_cosine
from ovdet.train.feature_cache import CacheReader, ShardedCache
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories


def annotated_boxes(gt: dict[str, Any]) -> dict[Any, tuple[torch.Tensor, torch.Tensor]]:
    """image id -> ((N, 4) xyxy clipped boxes of at least 1 px, (N,) category ids)."""
    anns = region_annotations(gt)
    out = {}
    for image_id, xyxy in gt_boxes_by_image(gt).items():
        ids = torch.tensor([int(a["category_id"]) for a in anns[image_id]], dtype=torch.int64)
        keep = ((xyxy[:, 2] - xyxy[:, 0]) >= 1) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1)
        out[image_id] = (xyxy[keep], ids[keep])
    return out


def check_cache_models(
    folder: str | os.PathLike, names: dict[str, str], shard_size: int = 256
) -> ShardedCache:
    """The cache at `folder`; an error if it already holds features of another SAM or CLIP."""
    cache = ShardedCache(folder, shard_size)
    meta = cache.metadata()
    if meta and (meta.get("sam"), meta.get("clip")) != (names["sam"], names["clip"]):
        raise OvdetError(
            f"{folder} caches sam={meta.get('sam')!r} clip={meta.get('clip')!r}, not "
            f"sam={names['sam']!r} clip={names['clip']!r}; use another --out"
        )
    return cache


def build_cache(
    gt: dict[str, Any],
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    extractor: FeatureExtractor,
    names: dict[str, str],
    shard_size: int = 256,
    progress: bool = True,
    ray_setup: Any = None,
    actors: int = 2,
) -> ShardedCache:
    """Cache every image's annotated boxes with their SAM and CLIP features (resumable; an
    unreadable image is reported and left out, and tried again by the next run). With
    `ray_setup` (a picklable function of no arguments returning a `FeatureExtractor`; then
    `extractor` may be None) `actors` Ray actors compute them; the shards are the same."""
    boxes = annotated_boxes(gt)
    files = {im["id"]: im["file_name"] for im in gt["images"]}

    def compute(image_id: Any) -> dict[str, torch.Tensor] | None:
        xyxy, labels = boxes[image_id]
        path = Path(images_dir) / files[image_id]
        try:
            image = load_image(path)
        except ImageError as e:
            return _skip(path, str(e))
        feats = extractor(image, xyxy)
        feats.pop("masks")
        return feats | {"labels": labels}

    cache = check_cache_models(out, names, shard_size)
    ids = [im["id"] for im in gt["images"]]
    if ray_setup is not None:
        compute = _from_ray(ray_setup, cache, ids, boxes, Path(images_dir), files, actors)
    cache.build(ids, compute, names, progress)
    return cache


def _skip(path: Path, reason: str) -> None:
    logging.getLogger(__name__).warning("skipped %s: %s", path, reason)


def _extractor_work(setup: Any) -> Any:
    """In a Ray actor: build the feature extractor once; its work takes (image, boxes) pairs."""
    extractor = setup()

    def work(images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[dict]:
        out = []
        for image, xyxy in zip(images, boxes, strict=True):
            feats = extractor(image, xyxy)
            feats.pop("masks")
            out.append(feats)
        return out

    return work


def _from_ray(
    setup: Any,
    cache: ShardedCache,
    ids: list[Any],
    boxes: dict[Any, tuple[torch.Tensor, torch.Tensor]],
    images_dir: Path,
    files: dict[Any, str],
    actors: int,
):
    """`compute(image_id)` for `ShardedCache.build` answered by Ray actors, which see the images
    not yet cached in the order `build` asks for them."""
    from functools import partial

    from ovdet.engines.ray_data import ray_map_images

    done = cache.done()
    todo = [i for i in ids if str(i) not in done]
    produced = ray_map_images(
        [images_dir / files[i] for i in todo],
        partial(_extractor_work, setup),
        actors=actors,
        payloads=[boxes[i][0] for i in todo],
    )

    def compute(image_id: Any) -> dict[str, torch.Tensor] | None:
        k, feats, error = next(produced)
        if todo[k] != image_id:
            raise RuntimeError(f"Ray returned image {todo[k]} where {image_id} was expected")
        if error is not None:
            return _skip(images_dir / files[image_id], error)
        return feats | {"labels": boxes[image_id][1]}

    return compute


@dataclass
class RegionSpotTrainConfig:
    steps: int = 1500
    batch_size: int = 16  # images per step
    lr: float = 5e-4  # AdamW
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    checkpoint_every: int = 500
    templates: str = "vild"  # "a photo of a {} in the scene."
    token: str = "transformer"  # or "prompt", "mlp" (ablation)
    depth: int = 3
    heads: int = 8
    feature_map: bool = True
    class_token: bool = True
    box_position: bool = True
    prior: str = "none"  # attention prior: "none" (the paper), "mask" or "box"

    def __post_init__(self) -> None:
        from ovdet.config import check_fields
        from ovdet.methods.regionspot.model import PRIORS
        from ovdet.vocab.prompts import TEMPLATE_SETS

        check_fields(
            self,
            positive=("batch_size", "lr", "checkpoint_every", "depth", "heads"),
            nonnegative=("steps", "weight_decay", "warmup", "seed"),  # steps 0: the initial model
            choices={
                "templates": sorted(TEMPLATE_SETS),
                "token": TOKEN_SOURCES,
                "prior": PRIORS,
            },
        )


def collate(
    reader: CacheReader, ids: Sequence[str], token: str, with_labels: bool = True
) -> dict[str, torch.Tensor]:
    """Images `ids` of the cache -> padded batch: tokens (B, N, Ct), boxes (B, N, 4) in [0, 1],
    valid (B, N), clip_map (B, D, h, w), clip_global (B, D), mask_cover (B, N, h, w) and, with
    labels, labels (B, N)."""
    items = [reader[i] for i in ids]
    n = max(1, max(len(it["xyxy"]) for it in items))
    ct = items[0][f"tok_{token}"].shape[-1]
    b = len(items)
    tokens, boxes = torch.zeros(b, n, ct), torch.zeros(b, n, 4)
    valid, labels = torch.zeros(b, n, dtype=torch.bool), torch.zeros(b, n, dtype=torch.int64)
    cover = torch.zeros(b, n, *items[0]["clip_map"].shape[-2:])
    for j, it in enumerate(items):
        k = len(it["xyxy"])
        tokens[j, :k] = it[f"tok_{token}"]
        cover[j, :k] = it["mask_cover"].float()
        boxes[j, :k] = it["xyxy"] * it["norm"]
        valid[j, :k] = True
        if with_labels:
            labels[j, :k] = it["labels"]
    batch = {
        "tokens": tokens,
        "boxes": boxes,
        "valid": valid,
        "clip_map": torch.stack([it["clip_map"].float() for it in items]),
        "clip_global": torch.stack([it["clip_global"] for it in items]),
        "mask_cover": cover,
    }
    return batch | ({"labels": labels} if with_labels else {})


def _embed(model: RegionSpot, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(
        batch["tokens"],
        batch["boxes"],
        batch["clip_map"],
        batch["clip_global"],
        batch["mask_cover"],
    )


def text_embeddings(
    clip: VisionLanguageModel, categories: list[dict[str, Any]], templates: str
) -> torch.Tensor:
    """(C, D) text embeddings of COCO categories sorted by id (names and synonyms)."""
    vocab = vocabulary_from_categories(sorted(categories, key=lambda c: c["id"]))
    return embed_vocabulary(clip, vocab, templates)


@flushes_denormals
def train_regionspot(
    cache_dir: str | os.PathLike,
    gt: dict[str, Any],
    out: str | os.PathLike,
    clip: VisionLanguageModel,
    base_ids: Sequence[int],
    cfg: RegionSpotTrainConfig,
    progress: bool = True,
    stop: Callable[[int], bool] | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Train the fusion module on the cache's base-category boxes; resume if `out` holds a run.
    `stop(steps done)` returning True checkpoints and ends the run early. `device` holds the
    module and each batch (the cache and the checkpoints stay on the CPU)."""
    if cfg.token not in TOKEN_SOURCES:
        raise OvdetError(f"token must be one of {TOKEN_SOURCES}, got {cfg.token!r}")
    cache = ShardedCache(cache_dir)
    reader = cache.reader()
    if len(reader) == 0:
        raise OvdetError(f"the cache {cache_dir} is empty; build it with `ovdet cache`")
    meta = cache.metadata()
    base = sorted(int(i) for i in base_ids)
    cats = sorted((c for c in gt["categories"] if c["id"] in set(base)), key=lambda c: c["id"])
    column = torch.full((max(c["id"] for c in gt["categories"]) + 1,), -1, dtype=torch.int64)
    column[torch.tensor([c["id"] for c in cats])] = torch.arange(len(cats))
    text = text_embeddings(clip, cats, cfg.templates)
    ids = [i for i in reader.ids() if bool((column[reader.field(i, "labels")] >= 0).any())]
    if not ids:
        raise OvdetError(f"no cached image has a box of the base categories {base[:20]}")
    first = reader[ids[0]]
    mcfg = RegionSpotConfig(
        token_dim=int(first[f"tok_{cfg.token}"].shape[-1]),
        clip_dim=int(first["clip_global"].shape[-1]),
        depth=cfg.depth,
        heads=cfg.heads,
        feature_map=cfg.feature_map,
        class_token=cfg.class_token,
        box_position=cfg.box_position,
        prior=cfg.prior,
    )
    spec = {
        "kind": "regionspot",
        "config": mcfg.to_dict(),
        "train": asdict(cfg),
        "sam": meta.get("sam"),
        "clip": meta.get("clip"),
        "clip_size": int(first["clip_map"].shape[-1]) * clip.patch_size,
        "templates": cfg.templates,
        "token": cfg.token,
        "base_names": [c["name"] for c in cats],
    }
    torch.manual_seed(cfg.seed)
    model = RegionSpot(mcfg).to(device)
    text, on_device = text.to(device), column.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    out = Path(out)

    check_batch_size(cfg.batch_size, len(ids), "cached training images")

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        pick = torch.randint(len(ids), (cfg.batch_size,), generator=g).tolist()
        batch = collate(reader, [ids[i] for i in pick], cfg.token)
        batch = {k: v if v is None else v.to(device) for k, v in batch.items()}
        cols = on_device[batch["labels"]]
        keep = batch["valid"] & (cols >= 0)
        logits = model.logits(_embed(model, batch)[keep], text)
        targets = torch.zeros_like(logits)
        targets[torch.arange(len(logits), device=logits.device), cols[keep]] = 1
        return {"focal": sigmoid_focal_loss(logits, targets)}

    train_resumable(
        step_losses,
        out,
        model,
        spec,
        opt,
        sched,
        cfg,
        same=("config", "train", "sam", "clip"),
        desc="train regionspot",
        progress=progress,
        stop=stop,
    )
    return out


@torch.inference_mode()
def cached_class_scores(
    model: RegionSpot, reader: CacheReader, text: torch.Tensor, token: str, batch_size: int = 64
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """image id -> ((N, 4) boxes in pixels, (N, C) sigmoid class scores) for every cached image."""
    out = {}
    ids = reader.ids()
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        batch = collate(reader, chunk, token, with_labels=False)
        scores = model.logits(_embed(model, batch), text).sigmoid()
        for j, image_id in enumerate(chunk):
            k = int(batch["valid"][j].sum())
            out[image_id] = (reader.field(image_id, "xyxy"), scores[j, :k])
    return out


def evaluate_cached(
    model: RegionSpot,
    token: str,
    cache_dir: str | os.PathLike,
    gt: dict[str, Any],
    clip: VisionLanguageModel,
    templates: str = "vild",
) -> dict[str, float]:
    """GT-box recognition AP (LVIS protocol when `gt` has frequencies) from a cached val set."""
    from ovdet.eval.detection import evaluate_detections, protocol_of
    from ovdet.eval.recognition import box_top1, recognition_detections

    cats = sorted(gt["categories"], key=lambda c: c["id"])
    text = text_embeddings(clip, cats, templates)
    by_key = {str(im["id"]): im for im in gt["images"]}
    scored = cached_class_scores(model.eval(), ShardedCache(cache_dir).reader(), text, token)
    dets = []
    for key, (xyxy, scores) in scored.items():
        if key in by_key and len(xyxy):
            im = by_key[key]
            size = (im["height"], im["width"])
            dets += recognition_detections(im["id"], size, xyxy, scores, [c["id"] for c in cats])
    lvis = protocol_of(gt) == "lvis"
    m = evaluate_detections(gt, dets, protocol="lvis" if lvis else "coco").metrics
    keys = ("AP", "AP50", "APr", "APc", "APf") if lvis else ("AP", "AP50")
    return {k: m[k] for k in keys} | {"top1": box_top1(gt, dets)}
