"""RKD's two offline caches (computed once per dataset and labeler, resumable, atomic shards).

- Region cache (distillation): for each detection-training image (or captioned image, whose
  proposals the official code distils in its image-label batches too), the labeler's top-k
  class-agnostic proposals (NMS 0.5) and CLIP's embedding of each 1x crop (RKD uses the plain
  crop, not ViLD's 1x + 1.5x ensemble), normalised. Keyed by dataset index.
- Pseudo-box cache (PIS): for each captioned image, the image-level labels its captions name and,
  per label, the labeler's top-1 box for "every {c}" and its score; the threshold is applied at
  training time, so one cache serves every threshold. Keyed by caption-dataset index.
Boxes are stored in the detector's input frame (letterboxed), as the training batches use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ovdet.data.captions import CaptionDataset, caption_labels
from ovdet.data.coco import CocoDetection
from ovdet.methods.rkd.labelers import PseudoLabeler, top_proposals
from ovdet.models.vlm import VisionLanguageModel
from ovdet.recognize.crop import CropEmbedder
from ovdet.train.feature_cache import ShardedCache
from ovdet.types import Vocabulary


def build_region_cache(
    labeler: PseudoLabeler,
    clip: VisionLanguageModel,
    dataset: CocoDetection | CaptionDataset,
    folder: Path,
    k: int = 5,
    count: int | None = None,
) -> ShardedCache:
    """Top-`k` proposals of the first `count` (default all) images and their CLIP 1x crops.
    A labeler reading a proposals file that covers none of the images is refused first."""
    cache = ShardedCache(folder)
    crops = CropEmbedder(clip, scales=(1.0,))
    captioned = isinstance(dataset, CaptionDataset)
    ids = [it.image_id for it in dataset.items] if captioned else [m["id"] for m in dataset.images]
    if hasattr(getattr(labeler, "source", None), "check_covers"):
        labeler.source.check_covers(ids)

    def compute(i: int) -> dict[str, torch.Tensor]:
        image = dataset.image(i)
        boxes, scores = labeler.proposals(image, ids[i])
        boxes, _ = top_proposals(boxes.float(), scores.float(), k)
        scale = dataset.scale(i) if captioned else dataset[i].scale
        return {"boxes": boxes * scale, "embeddings": crops.embed(image, boxes).cpu()}

    n = len(dataset) if count is None else min(count, len(dataset))
    cache.build(list(range(n)), compute, metadata={"k": str(k), "labeler": labeler.name})
    return cache


def build_pseudo_box_cache(
    labeler: PseudoLabeler, dataset: Any, vocab: Vocabulary, folder: Path
) -> ShardedCache:
    """Per captioned image: (L,) labels its captions name, (L, 4) top-1 boxes, (L,) scores."""
    cache = ShardedCache(folder)

    def compute(i: int) -> dict[str, torch.Tensor]:
        item = dataset.items[i]
        labels = sorted({c for text in item.captions for c in caption_labels(text, vocab)})
        image = dataset.image(i)
        boxes, scores = labeler.best_boxes(image, item.image_id, labels)
        return {
            "labels": torch.tensor(labels, dtype=torch.int64),
            "boxes": boxes.float().reshape(-1, 4) * dataset.scale(i),
            "scores": scores.float().reshape(-1),
        }

    cache.build(list(range(len(dataset))), compute, metadata={"labeler": labeler.name})
    return cache
