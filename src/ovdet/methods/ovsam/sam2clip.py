"""SAM2CLIP: train the adapter to reproduce SAM's image embeddings from a frozen CLIP, and use
it in place of SAM's encoder.

Loss: MSE(F_sam, adapter(CLIP levels)) on unlabelled images (the shapes world's SAM training
split, rendered on the fly); CLIP and SAM stay frozen. A checkpoint folder holds the adapter
(`model.safetensors`) and `spec.json` (kind "sam2clip", the CLIP and SAM it pairs, the level
layout); `train_state.pt` resumes a killed run exactly (`train.common`).

`Sam2ClipBackend` is a `SamBackend` whose `set_image` runs CLIP + adapter instead of SAM's
encoder, so every SAM prompt path (boxes, points, RegionSpot's tokens) works on it unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ovdet.methods.ovsam.adapter import Sam2ClipAdapter, clip_levels
from ovdet.models.sam import SamBackend, SamImage, normalize_sam
from ovdet.ops.letterbox import Letterbox
from ovdet.train.common import flushes_denormals, train_resumable, warmup_cosine

log = logging.getLogger(__name__)
SAM2CLIP_SPLIT_CODE = 6  # generator split of SAM2CLIP's unlabelled scenes (SAM's are 3 and 4)


@dataclass
class Sam2ClipConfig:
    clip: str = "shapes-clip"
    sam: str = "shapes-sam"
    blocks: int = 2  # SAM ViT blocks after the level fusion
    steps: int = 1500
    batch_size: int = 8
    lr: float = 1e-3  # AdamW
    weight_decay: float = 0.01
    warmup: int = 50
    seed: int = 0
    size: int = 128  # scene side = SAM's input side
    checkpoint_every: int = 250
    val_scenes: int = 96

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(
            self,
            positive=("blocks", "batch_size", "lr", "size", "val_scenes"),
            nonnegative=("steps", "weight_decay", "warmup", "seed", "checkpoint_every"),
        )


class ClipFeatures:
    """A frozen CLIP's normalised multi-scale features of uint8 images (a conv tower's stages,
    or a transformers ViT's tokens after evenly spaced layers: see `clip_levels`)."""

    def __init__(self, clip: Any) -> None:
        self.clip = clip
        model = clip.model
        self.tower = model.vision if hasattr(model, "vision") else model.vision_model

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixels in [0, 255] -> CLIP's normalised input."""
        mean, std = self.clip.mean.to(pixels.device), self.clip.std.to(pixels.device)
        return (pixels.float() / 255 - mean) / std

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised (B, 3, S, S) input -> CLIP levels, finest first (no gradient)."""
        with torch.no_grad():
            return clip_levels(self.tower, x)

    def __call__(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) pixels in [0, 255] -> CLIP levels, finest first (no gradient)."""
        return self.levels(self.normalize(pixels))

    def layout(self, size: int) -> tuple[list[int], list[int]]:
        """Each level's channels and stride (input pixels) at input side `size`."""
        levels = self(torch.zeros(1, 3, size, size, device=self.clip.device))  # where CLIP lives
        return [int(lv.shape[1]) for lv in levels], [size // int(lv.shape[-1]) for lv in levels]


def build_adapter(clip: Any, sam_model: Any, size: int, blocks: int) -> Sam2ClipAdapter:
    """An adapter for `clip`'s levels at input side `size`, seeded from `sam_model`'s encoder."""
    return Sam2ClipAdapter(*ClipFeatures(clip).layout(size), sam_model.vision_encoder, blocks)


@flushes_denormals
def train_sam2clip(
    out: str | os.PathLike, cfg: Sam2ClipConfig, progress: bool = True, stop: Any = None
) -> dict[str, Any]:
    """Distil SAM's encoder into the adapter; resumes a run in `out`. Returns the held-out
    box-prompt mIoU through SAM's frozen decoder with the adapter's embeddings and with SAM's."""
    from transformers import SamModel

    from ovdet.models.bundled import checkpoint_folder
    from ovdet.models.loader import load_model
    from ovdet.train.shapes_sam import render_batch, scene_miou

    torch.manual_seed(cfg.seed)
    clip = load_model(cfg.clip)
    sam = SamModel.from_pretrained(str(checkpoint_folder(cfg.sam))).eval().requires_grad_(False)
    features = ClipFeatures(clip)
    adapter = build_adapter(clip, sam, cfg.size, cfg.blocks)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    spec = {"kind": "sam2clip", **asdict(cfg)}

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        start = step * cfg.batch_size
        images, *_ = render_batch(
            cfg.seed, SAM2CLIP_SPLIT_CODE, range(start, start + cfg.batch_size), cfg.size
        )
        with torch.no_grad():
            target = sam.get_image_embeddings(normalize_sam(images))
        return {"mse": F.mse_loss(adapter(features(images)), target)}

    same = ("clip", "sam", "blocks", "batch_size", "lr", "size", "seed", "steps", "warmup")
    out = Path(out)
    train_resumable(
        step_losses, out, adapter, spec, opt, sched, cfg, same, "train sam2clip", progress, stop
    )
    adapter.eval()
    report = {
        "val_miou_sam2clip": scene_miou(
            sam, cfg, cfg.val_scenes, lambda im: adapter(features(im.float()))
        ),
        "val_miou_sam": scene_miou(sam, cfg, cfg.val_scenes),
        "val_mse": held_out_mse(adapter, features, sam, cfg),
    }
    log.info("held-out mIoU: SAM2CLIP %.3f, SAM %.3f", *list(report.values())[:2])
    from ovdet.io.atomic import write_json

    write_json(out / "report.json", report, indent=1)
    return report


@torch.no_grad()
def held_out_mse(adapter: Any, features: ClipFeatures, sam: Any, cfg: Any, count: int = 32):
    """Mean squared error to SAM's embeddings over `count` held-out scenes."""
    from ovdet.train.shapes_sam import SAM_VAL_CODE, render_batch

    adapter.eval()
    images, *_ = render_batch(cfg.seed, SAM_VAL_CODE, range(count), cfg.size)
    target = sam.get_image_embeddings(normalize_sam(images))
    return float(F.mse_loss(adapter(features(images)), target))


def load_sam2clip(folder: str | os.PathLike, device: str | torch.device = "cpu"):
    """A trained SAM2CLIP folder (or the bundled name shapes-sam2clip) -> (Sam2ClipBackend,
    spec)."""
    from safetensors.torch import load_file

    from ovdet.errors import FormatError
    from ovdet.models.bundled import checkpoint_folder
    from ovdet.models.loader import load_model

    folder = checkpoint_folder(folder)
    spec = json.loads((folder / "spec.json").read_text())
    if spec.get("kind") != "sam2clip":
        raise FormatError(f"{folder}/spec.json is a {spec.get('kind')!r}, not a sam2clip run")
    sam = SamBackend.from_pretrained(spec["sam"], device=device)
    clip = load_model(spec["clip"], device=device)
    adapter = build_adapter(clip, sam.model, spec["size"], spec["blocks"])
    adapter.load_state_dict(load_file(folder / "model.safetensors"))
    return Sam2ClipBackend(sam.model, clip, adapter.to(device).eval()), spec


class Sam2ClipBackend(SamBackend):
    """SAM's prompt encoder and decoder on the adapter's embeddings of CLIP's features: one CLIP
    pass per image instead of SAM's encoder."""

    def __init__(self, model: Any, clip: Any, adapter: Sam2ClipAdapter, name: str = "sam2clip"):
        super().__init__(model, name)
        self.clip, self.adapter, self.features = clip, adapter, ClipFeatures(clip)

    @torch.inference_mode()
    def set_image(self, image: torch.Tensor) -> SamImage:
        box = Letterbox.fit(*image.shape[-2:], self.image_size)
        x = box.image(image, "bilinear", self.features.normalize, self.device)  # CLIP's input
        emb = self.adapter(self.features.levels(x))
        return SamImage(emb, box.scale, box.resized, (int(image.shape[-2]), int(image.shape[-1])))
