"""Train RKD (Rasheed et al., NeurIPS 2022; METHODS.md section 3) by fine-tuning a ViLD-text
checkpoint: the detector is ViLD-text's (fixed text classifier), classifying either as the
official code does (`classification="sigmoid"`: per-class sigmoids of 50 x cos, binary
cross-entropy, no background, so an unannotated object is a negative for the base classes and
nothing pulls it towards a learned background embedding) or as ViLD does ("softmax": a learned
background, cross-entropy), plus

- region-based distillation on box batches: the RoI head's distillation embedding
  `e = W_D phi(r)` of each cached proposal matched to its CLIP crop embedding, point-wise
  (`L1 = l1_weight * mean |e - t|`, normalised) and by inter-embedding relations over the
  batch's distilled regions (`IRM = irm_weight * ||rownorm(E E^T) - rownorm(T T^T)||_F^2`);
- pseudo-box image-level supervision (PIS) on caption batches, alternating 1:1 with box
  batches: each caption label's pseudo-box (the labeler's top-1 box, kept above a score
  threshold) is the only proposal of its image, classified over the caption vocabulary with
  `PMS = pms_weight * BCE` (sigmoid; "softmax": CE among background + the vocabulary); no RPN
  or box-regression loss on those images; with `distill_captions` the caption images' own
  proposals are distilled in those batches too (L1 + IRM, as the official code's image-label
  batches do);
- weight transfer (optional): classification through `heads.weight_transfer` with W_D frozen.

By default the backbone and RPN stay those of the ViLD-text checkpoint (frozen; each image's
features are computed once), so every row of a comparison fine-tunes the same RoI heads on the
same schedule; `train_backbone` trains them too, as the official runs do (the RPN's losses on box
batches, none on caption batches; BatchNorm statistics kept, as Detectron2's FrozenBN).
A checkpoint is a ViLD checkpoint (spec "kind": "rkd", with the ViLD fields), so `ovdet detect`
and `ViLDDetector` load it. Killed runs resume exactly (see `train.common`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ovdet.data.captions import CaptionDataset
from ovdet.data.pipeline import check_split
from ovdet.errors import OvdetError
from ovdet.losses.rkd import irm_loss, rkd_l1_loss
from ovdet.methods.vild.finetune import fine_tune_start, process_share
from ovdet.methods.vild.model import CLASSIFICATIONS
from ovdet.methods.vild.train import FrozenFeatures, targets_on
from ovdet.models.vlm import VisionLanguageModel
from ovdet.train.common import check_batch_size, flushes_denormals, train_resumable, warmup_cosine
from ovdet.train.distributed import Distributed, share_of_mean
from ovdet.train.feature_cache import ShardedCache


@dataclass
class RKDTrainConfig:
    init: str = "shapes-vild-text"  # the ViLD-text checkpoint fine-tuned (folder or bundled)
    steps: int = 400
    batch_size: int = 8
    lr: float = 5e-4  # AdamW
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    checkpoint_every: int = 200
    l1_weight: float = 15.0  # 0.15 x the official code's hard-coded 100
    irm_weight: float = 15.0  # 0: point-wise distillation only
    irm_images: int = 2  # IRM within groups of this many images' regions, averaged (official:
    # one group per GPU, 2 images x 5 proposals = 10 regions)
    pms_weight: float = 0.1
    pseudo_threshold: float = 0.5  # keep a pseudo-box above this score (COCO/MAVL: 0.95)
    weight_transfer: bool = False
    classification: str = "softmax"  # ViLD's learned background; "sigmoid": the official BCE
    sigmoid_temperature: float = 0.02  # tau of the sigmoid form (the official 50 x cos)
    distill_captions: bool = False  # distil the caption images' proposals in PIS batches too
    roi_batch: int = 0  # RoIs sampled per box image for the detection losses; 0: the init's
    train_backbone: bool = False  # also train the backbone and RPN (the official setting), with
    # the RPN's losses on box batches; BatchNorm statistics stay the init's (frozen, as the
    # official Detectron2 ResNet's FrozenBN); every batch then runs the backbone with a graph

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(
            self,
            positive=("batch_size", "lr", "checkpoint_every", "irm_images", "sigmoid_temperature"),
            nonnegative=(
                "steps",
                "weight_decay",
                "warmup",
                "seed",
                "l1_weight",
                "irm_weight",
                "pms_weight",
                "roi_batch",
            ),
            unit=("pseudo_threshold",),
            choices={"classification": CLASSIFICATIONS},
        )
        if not self.init:
            raise OvdetError("RKD fine-tunes a ViLD-text checkpoint: give init")


def pseudo_boxes(entry: dict[str, torch.Tensor], threshold: float) -> tuple[torch.Tensor, ...]:
    """The kept (K, 4) boxes and (K,) labels of one cached caption image."""
    keep = entry["scores"] > threshold
    return entry["boxes"][keep], entry["labels"][keep]


def grouped_irm(
    student: torch.Tensor, teacher: torch.Tensor, boxes: list[torch.Tensor], cfg: RKDTrainConfig
) -> torch.Tensor:
    """IRM within each group of `cfg.irm_images` consecutive images' regions, averaged: the
    official runs compute it per GPU over 2 images x 5 proposals, and ||.||_F^2 grows with the
    square of the regions in a matrix, so larger groups would weigh it far more."""
    counts = [len(b) for b in boxes]
    sizes = [sum(counts[i : i + cfg.irm_images]) for i in range(0, len(counts), cfg.irm_images)]
    parts = [
        irm_loss(s, t, cfg.irm_weight)
        for s, t in zip(student.split(sizes), teacher.split(sizes), strict=True)
    ]
    return torch.stack(parts).mean()


@flushes_denormals
def train_rkd(
    gt: dict[str, Any],
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: RKDTrainConfig,
    regions: ShardedCache | None = None,
    captions: CaptionDataset | None = None,
    pseudo: ShardedCache | None = None,
    caption_text: torch.Tensor | None = None,
    stop: Callable[[int], bool] | None = None,
    clip: VisionLanguageModel | None = None,
    device: str | torch.device = "cpu",
    caption_regions: ShardedCache | None = None,
    where: Distributed | None = None,
) -> Path:
    """Fine-tune `cfg.init` into `out`; the model and each batch on `device` (the caches and the
    checkpoints stay on the CPU). `where`: this process's place among several (torchrun): each
    takes its part of every step's batch (see `process_share`).

    Args:
        gt: the detection training set (its base categories are the init's).
        regions: the distillation cache (`cache.build_region_cache`); None: no distillation.
        captions, pseudo, caption_text: the captioned images, their pseudo-box cache and the
            (C, D) text embeddings of the vocabulary the pseudo labels index; None: no PIS.
        clip: the init's CLIP (default: loaded by the name in its spec), for the base classes'
            text embeddings (a checkpoint does not store them).
        caption_regions: the captioned images' distillation cache (needed by
            `cfg.distill_captions`).
    """
    out = Path(out)
    where = where or Distributed(device=str(device))
    check_split(cfg.batch_size, where.world)
    if (pseudo is None) != (captions is None) or (pseudo is None) != (caption_text is None):
        raise OvdetError("PIS needs the captioned images, their pseudo-boxes and their vocabulary")
    if cfg.distill_captions and (pseudo is None or caption_regions is None):
        raise OvdetError(
            "distill-captions needs PIS (captions) and the caption images' region cache"
        )
    fields = asdict(cfg) | {"distill": regions is not None, "pis": pseudo is not None}
    model, spec, dataset = fine_tune_start(
        cfg.init,
        cfg.seed,
        gt,
        images_dir,
        "rkd",
        fields,
        clip,
        weight_transfer=cfg.weight_transfer,
        classification=cfg.classification,
        roi_batch=cfg.roi_batch,
        train_backbone=cfg.train_backbone,
        **({"temperature": cfg.sigmoid_temperature} if cfg.classification == "sigmoid" else {}),
    )
    model.to(device)
    mine = process_share(spec, where, cfg.seed)  # this process's images of a step
    if caption_text is not None:
        caption_text = caption_text.to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    box_features, caption_features = FrozenFeatures(model), FrozenFeatures(model)
    cached = regions.reader() if regions is not None else None  # memory-mapped, read per batch
    distilled = sorted(int(k) for k in cached.ids()) if cached is not None else []
    labelled = []
    if pseudo is not None:
        entries = pseudo.load()
        labelled = [
            int(k) for k, e in entries.items() if len(pseudo_boxes(e, cfg.pseudo_threshold)[0])
        ]
        if not labelled:
            raise OvdetError(
                f"no captioned image has a pseudo-box above {cfg.pseudo_threshold}; lower "
                "--pseudo-threshold or check the captions name the vocabulary"
            )
        labelled.sort()
        check_batch_size(cfg.batch_size, len(labelled), "captioned images with a pseudo-box")
    check_batch_size(cfg.batch_size, len(distilled or dataset))

    caption_cached = caption_regions.reader() if cfg.distill_captions else None

    def distillation(
        features: torch.Tensor, picked: list[int], cache: Any
    ) -> dict[str, torch.Tensor]:
        boxes = [cache[str(i)]["boxes"].to(device) for i in picked]
        student, _ = model.text_head(features, boxes)  # W_D phi(r)
        teacher = torch.cat([cache[str(i)]["embeddings"] for i in picked]).to(device)
        l1 = rkd_l1_loss(student, teacher, cfg.l1_weight)
        losses = {"l1": share_of_mean(l1, len(student), where)}
        if cfg.irm_weight > 0:  # groups form within a process's images (official: per GPU)
            groups = -(-len(picked) // cfg.irm_images)
            irm = grouped_irm(student, teacher, boxes, cfg)
            losses["irm"] = share_of_mean(irm, groups, where)
        return losses

    def backbone_pass(
        memo: FrozenFeatures,
        picked: list[int],
        batch: list[Any],
        gt_boxes: list | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """(B, C, h, w) features, B (P, 4) proposal sets and the RPN's losses of a batch: the
        frozen backbone's (memoised, no losses), or with `train_backbone` a pass with a graph
        (the RPN's losses when `gt_boxes` are given)."""
        if not cfg.train_backbone:
            return *memo.get(picked, batch), {}
        model.backbone.eval()  # BatchNorm keeps the init's statistics (FrozenBN)
        pixels = torch.stack([s.pixels for s in batch]).to(device)
        return model.propose(pixels, [s.size for s in batch], gt_boxes, generators)

    def box_batch(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        pool = distilled or list(range(len(dataset)))
        drawn = [pool[j] for j in torch.randint(len(pool), (cfg.batch_size,), generator=g)]
        picked, generators = mine(step, drawn)
        batch = [dataset[i] for i in picked]
        targets = targets_on(batch, device)
        features, proposals, losses = backbone_pass(
            box_features, picked, batch, targets[0], generators
        )
        losses |= model.head_losses(features, proposals, *targets, generators=generators)
        if cached is not None:
            losses |= distillation(features, picked, cached)
        return losses

    def caption_batch(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        drawn = [labelled[j] for j in torch.randint(len(labelled), (cfg.batch_size,), generator=g)]
        picked, _ = mine(step, drawn)
        batch = [captions[i] for i in picked]
        features, _, _ = backbone_pass(caption_features, picked, batch)
        kept = [pseudo_boxes(entries[str(i)], cfg.pseudo_threshold) for i in picked]
        emb, _ = model.class_outputs(features, [b.to(device) for b, _ in kept])
        labels = torch.cat([lab for _, lab in kept]).to(device) + 1
        pms = cfg.pms_weight * model.classification_loss(emb, labels, caption_text)
        # the detector's own form: BCE (sigmoid) or CE with background
        losses = {"pms": share_of_mean(pms, len(labels), where)}
        if caption_cached is not None:
            losses |= distillation(features, picked, caption_cached)
        return losses

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        if pseudo is not None and step % 2 == 1:
            return caption_batch(step, g)
        return box_batch(step, g)

    parts = {
        "L1": cached is not None,
        "IRM": cached is not None and cfg.irm_weight > 0,
        "PIS": pseudo is not None,
        "caption regions distilled": caption_cached is not None,
        "WT": cfg.weight_transfer,
        "backbone trained": cfg.train_backbone,
    }
    name = " + ".join(k for k, on in parts.items() if on) or "fine-tune only"
    train_resumable(
        step_losses,
        out,
        model,
        spec,
        opt,
        sched,
        cfg,
        same=tuple(spec),
        desc=f"train RKD ({name})",
        stop=stop,
        where=where,
    )
    return out
