"""Train the shapes world's tiny SAM: a transformers `SamModel` learning box prompt -> mask.

The model is an ordinary `SamModel` (small ViT encoder at 128 px with 8 px patches, so a 16x16
image embedding and 64x64 mask logits), so `SamBackend` and any SAM code load it unchanged. It
is trained from scratch on scenes rendered on the fly (their own split of the generator, shapes
drawn uniformly: SAM is class-agnostic, and SA-1B has no labels either), with each visible
object's box prompted (jittered as in SAM's training: noise of 10% of the box side) and its
visible mask as the target. Loss: binary cross-entropy + dice on the mask logits upsampled to the
image, plus the mean squared error of the predicted IoU against the mask's real IoU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ovdet.data.shapes.world import render_scene
from ovdet.io.atomic import atomic_folder, check_replaceable, write_json
from ovdet.models.sam import normalize_sam
from ovdet.ops.masks import mask_iou
from ovdet.train.common import flushes_denormals, run_steps, warmup_cosine

log = logging.getLogger(__name__)

SAM_SPLIT_CODE = 3  # generator split of SAM's training scenes (0-2 are captions/det-train/det-val)
SAM_VAL_CODE = 4  # scenes for the quick validation at the end of training
MAX_PROMPTS = 4  # objects per scene (the detection splits' maximum)


@dataclass
class SamTrainConfig:
    steps: int = 6000
    batch_size: int = 8
    lr: float = 5e-4  # AdamW
    weight_decay: float = 0.01
    warmup: int = 100
    seed: int = 0
    size: int = 128  # scene side = model input side
    box_noise: float = 0.1  # std of the prompt jitter, in box sides
    val_scenes: int = 200
    init: str = ""  # continue from this saved model instead of random weights
    first_scene: int = 0  # index of the first training scene (continue on unseen scenes)

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(
            self,
            positive=("steps", "batch_size", "lr", "val_scenes"),
            nonnegative=("weight_decay", "warmup", "seed", "box_noise", "first_scene"),
        )
        if self.size < 32 or self.size % 8:
            from ovdet.errors import ConfigError

            raise ConfigError(f"size must be a multiple of 8 and at least 32, got {self.size}")


def shapes_sam_config(size: int = 128) -> Any:
    """The `SamConfig` of the shapes world's SAM (~0.7 M parameters)."""
    from transformers import SamConfig

    patch = 8
    config = SamConfig(
        vision_config=dict(
            hidden_size=96,
            output_channels=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=size,
            patch_size=patch,
            window_size=4,
            global_attn_indexes=(1, 3),
            num_pos_feats=32,
            mlp_dim=384,
        ),
        prompt_encoder_config=dict(
            hidden_size=64,
            image_size=size,
            patch_size=patch,
            image_embedding_size=size // patch,
            mask_input_channels=8,
        ),
        mask_decoder_config=dict(
            hidden_size=64, mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=64
        ),
    )
    # Random Fourier position features at SAM's own scale (1.0). transformers initialises them
    # with std hidden_size // 2 (48 here), i.e. frequencies far above the 16x16 grid: positions
    # become hash codes and box prompts cannot be matched to image locations (training stalls
    # at blob-shaped masks). Pretrained checkpoints overwrite this initialisation anyway.
    config.vision_config.scale = 1.0
    return config


def render_batch(
    seed: int, code: int, indices: range, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes `indices` of split `code` -> (B, 3, S, S) uint8 images, (B, P, 4) xyxy boxes,
    (B, P, S, S) bool masks and (B, P) bool validity (P = MAX_PROMPTS; padding repeats row 0)."""
    images, boxes, masks, valid = [], [], [], []
    for i in indices:
        scene = render_scene(
            np.random.default_rng([seed, code, i]), (size, size), MAX_PROMPTS, uniform=True
        )
        m = torch.from_numpy(np.stack(scene.masks))
        keep = m.flatten(1).any(1)
        m = m[keep] if keep.any() else m
        b = _mask_boxes(m)
        n = len(m)
        pad = [0] * (MAX_PROMPTS - n)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1))
        boxes.append(torch.cat([b, b[pad]]))
        masks.append(torch.cat([m, m[pad]]))
        valid.append(torch.arange(MAX_PROMPTS) < n)
    return torch.stack(images), torch.stack(boxes), torch.stack(masks), torch.stack(valid)


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    from ovdet.ops.masks import masks_to_boxes

    return masks_to_boxes(masks)


def jitter(boxes: torch.Tensor, noise: float, size: int, g: torch.Generator) -> torch.Tensor:
    """(..., 4) xyxy boxes moved by N(0, noise * side) per coordinate (at most 20 px), clipped."""
    wh = boxes[..., 2:] - boxes[..., :2]
    side = torch.cat([wh, wh], -1)  # (w, h, w, h) matches (x1, y1, x2, y2)
    delta = (torch.randn(boxes.shape, generator=g) * noise * side).clamp(-20, 20)
    out = (boxes + delta).clamp(0, size)
    lo, hi = torch.minimum(out[..., :2], out[..., 2:]), torch.maximum(out[..., :2], out[..., 2:])
    return torch.cat([lo, torch.maximum(hi, lo + 1)], -1)


def mask_losses(
    logits: torch.Tensor,
    target: torch.Tensor,
    iou_pred: torch.Tensor,
    valid: torch.Tensor,
    reduce: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, S, S) logits at image size, (M, S, S) bool targets, (M,) predicted IoU, (M,) bool
    validity -> (BCE + dice, IoU-head MSE), averaged over valid prompts, or (M,) each unreduced."""
    t = target.float()
    w = valid.float() / valid.float().sum().clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((1, 2))
    p = logits.sigmoid()
    dice = 1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    with torch.no_grad():
        iou = mask_iou(logits > 0, target)
    if not reduce:
        return bce + dice, (iou_pred - iou) ** 2
    return ((bce + dice) * w).sum(), (((iou_pred - iou) ** 2) * w).sum()


def _decode(
    model: Any, emb: torch.Tensor, size: int, boxes=None, points=None, multimask: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt (B, C, h, w) embeddings with (B, P, 4) boxes or (B, P, 2) positive points ->
    (B*P, K, S, S) mask logits at image size and (B*P, K) predicted IoU (K = 3 or 1)."""
    kwargs: dict[str, Any] = {"input_boxes": boxes}
    if points is not None:
        kwargs = {
            "input_points": points[:, :, None],
            "input_labels": torch.ones(points.shape[:2], dtype=torch.long)[..., None],
        }
    out = model(image_embeddings=emb, multimask_output=multimask, **kwargs)
    logits = out.pred_masks.flatten(0, 1)  # (B*P, K, h4, w4)
    up = F.interpolate(logits, size=(size, size), mode="bilinear")
    return up, out.iou_scores.flatten(0, 1)


def random_points(masks: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, P, S, S) bool masks -> (B, P, 2) xy: a uniformly drawn pixel centre of each mask."""
    flat = masks.flatten(2).float() + 1e-9  # an empty mask draws anywhere
    idx = torch.multinomial(flat.flatten(0, 1), 1, generator=g).view(masks.shape[:2])
    side = masks.shape[-1]
    return torch.stack([idx % side, idx // side], -1).float() + 0.5


@torch.no_grad()
def scene_miou(model: Any, cfg: Any, count: int, embed: Any = None) -> float:
    """Mean IoU of box-prompt masks over `count` held-out rendered scenes (exact boxes).

    `cfg` gives seed, size and batch_size; `embed` maps (B, 3, S, S) uint8 images to the image
    embeddings the decoder reads (default: the model's own encoder; SAM2CLIP passes its adapter).
    """
    model.eval()
    ious = []
    for start in range(0, count, cfg.batch_size):
        images, boxes, masks, valid = render_batch(
            cfg.seed, SAM_VAL_CODE, range(start, min(count, start + cfg.batch_size)), cfg.size
        )
        if embed is None:
            emb = model.get_image_embeddings(normalize_sam(images))
        else:
            emb = embed(images)
        logits, _ = _decode(model, emb, cfg.size, boxes=boxes.float())
        hard, t = logits[:, 0] > 0, masks.flatten(0, 1)
        ious.append(mask_iou(hard, t)[valid.flatten()])
    return float(torch.cat(ious).float().mean())


@flushes_denormals
def train_shapes_sam(out: str | os.PathLike, cfg: SamTrainConfig, progress: bool = True) -> dict:
    """Train from scratch and save the model (`save_pretrained`, atomically) to `out` (new,
    empty or an earlier model folder)."""
    from transformers import SamModel

    check_replaceable(out, "config.json", "model")
    torch.manual_seed(cfg.seed)
    if cfg.init:
        model = SamModel.from_pretrained(cfg.init).train()
    else:
        model = SamModel(shapes_sam_config(cfg.size)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        if step and step % 250 == 0:
            log.info("step %d: held-out mIoU %.3f", step, scene_miou(model, cfg, 48))
            model.train()
        start = cfg.first_scene + step * cfg.batch_size
        images, boxes, masks, valid = render_batch(
            cfg.seed, SAM_SPLIT_CODE, range(start, start + cfg.batch_size), cfg.size
        )
        emb = model.vision_encoder(normalize_sam(images))[0]
        target, weight = masks.flatten(0, 1), valid.flatten()
        prompts = jitter(boxes.float(), cfg.box_noise, cfg.size, g)
        logits, iou_pred = _decode(model, emb, cfg.size, boxes=prompts)
        mask_loss, iou_loss = mask_losses(logits[:, 0], target, iou_pred[:, 0], weight)
        # a single point is ambiguous: three outputs, the best one is trained (SAM's recipe)
        logits, iou_pred = _decode(
            model, emb, cfg.size, points=random_points(masks, g), multimask=True
        )
        per_output = [
            mask_losses(logits[:, k], target, iou_pred[:, k], weight, reduce=False)
            for k in range(logits.shape[1])
        ]
        point_mask = torch.stack([m for m, _ in per_output], 1).min(1).values
        w = weight.float() / weight.float().sum().clamp(min=1)
        point_loss = (point_mask * w).sum() + sum((i * w).sum() for _, i in per_output)
        return {"box": mask_loss, "iou": iou_loss, "point": point_loss}

    run_steps(
        step_losses,
        model,
        opt,
        sched,
        cfg.steps,
        cfg.seed,
        desc="train shapes-sam",
        progress=progress,
        grad_clip=1.0,
    )
    miou = scene_miou(model, cfg, cfg.val_scenes)
    report = {"config": asdict(cfg), "val_scene_miou": miou}
    log.info("held-out scene mIoU %.3f", miou)
    with atomic_folder(out) as tmp:
        model.eval().save_pretrained(tmp)
        write_json(Path(tmp) / "training.json", report, indent=1)
    return report
