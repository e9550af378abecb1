"""SAM2CLIP: train the adapter to reproduce SAM's image embeddings from a frozen CLIP, and use
it in place of SAM's encoder.

Loss: MSE(F_sam, adapter(CLIP levels)) on unlabelled images: any folder (SAM's embeddings cached
once, `methods.ovsam.data`), or the shapes world's SAM training split rendered on the fly. CLIP
and SAM stay frozen; the input side is SAM's (1024 px for SAM-B/L/H). A checkpoint folder holds
the adapter (`model.safetensors`) and `spec.json` (kind "sam2clip", the CLIP and SAM it pairs,
the level layout); `train_state.pt` resumes a killed run exactly (`train.common`).

`Sam2ClipBackend` is a `SamBackend` whose `set_image` runs CLIP + adapter instead of SAM's
encoder, so every SAM prompt path (boxes, points, RegionSpot's tokens) works on it unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ovdet.data.image_list import ImageList
from ovdet.errors import ConfigError, OvdetError
from ovdet.io.atomic import write_json
from ovdet.methods.ovsam.adapter import Sam2ClipAdapter, clip_levels
from ovdet.models.loader import load_model
from ovdet.models.registry import resolve_stored, stored_name
from ovdet.models.sam import SamBackend, SamImage, normalize_sam
from ovdet.ops.letterbox import Letterbox
from ovdet.train.common import flushes_denormals, train_resumable, warmup_cosine
from ovdet.train.distributed import Distributed

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
    size: int = 0  # input side: 0 takes SAM's from its checkpoint (1024 for SAM-B/L/H)
    checkpoint_every: int = 250
    val_scenes: int = 96  # held-out rendered scenes (the shapes world's reports)
    precision: str = "fp32"  # fp32, bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)

    def __post_init__(self) -> None:
        from ovdet.config import check_fields
        from ovdet.train.precision import PRECISIONS

        check_fields(
            self,
            positive=("blocks", "batch_size", "lr", "val_scenes"),
            nonnegative=("steps", "weight_decay", "warmup", "seed", "checkpoint_every", "size"),
            choices={"precision": PRECISIONS},
        )


def sam_side(size: int, sam: Any) -> int:
    """The input side a SAM2CLIP run trains at: SAM's own (`size` 0), or `size` when it is SAM's;
    any other is refused in one line (the adapter's grid is SAM's position embedding's)."""
    side = int(sam.config.vision_config.image_size)
    if size not in (0, side):
        raise ConfigError(
            f"--size {size} does not match the SAM's input side {side} (its position embedding "
            "is fixed to it): leave --size out to take it from the checkpoint"
        )
    return side


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
    out: str | os.PathLike,
    cfg: Sam2ClipConfig,
    progress: bool = True,
    stop: Any = None,
    images: ImageList | None = None,
    data: FolderOptions | None = None,
    where: Distributed | None = None,
) -> dict[str, Any]:
    """Distil SAM's encoder into the adapter; resumes a run in `out`.

    Without `images`, on the shapes world's rendered scenes (a new batch each step), reporting
    the held-out box-prompt mIoU through SAM's frozen decoder with the adapter's embeddings and
    with SAM's. With `images` (any folder), SAM's embeddings are cached once (`data.cache`,
    default out/teacher-cache), the last `data.val_images` by file name are held out, the rest
    drawn in shuffled passes, and the report gives the held-out MSE. `where` places this process
    among torchrun's (file images only: each takes its share of every batch)."""
    from ovdet.train.precision import Precision

    where = where or Distributed()
    torch.manual_seed(cfg.seed)
    clip = load_model(cfg.clip, device=where.device)
    sam = SamBackend.from_pretrained(cfg.sam, device=where.device)
    sam.model.eval().requires_grad_(False)
    cfg = replace(cfg, size=sam_side(cfg.size, sam.model))
    cfg = replace(cfg, clip=stored_name(cfg.clip), sam=stored_name(cfg.sam))  # for any cwd
    features = ClipFeatures(clip)
    adapter = build_adapter(clip, sam.model, cfg.size, cfg.blocks).to(where.device)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    spec = {"kind": "sam2clip", **asdict(cfg), "images": "rendered" if images is None else "files"}
    if images is None:
        if where.active:
            raise OvdetError("the shapes world's rendered SAM2CLIP trains in one process")
        step_losses, started, report = _rendered(adapter, features, sam.model, cfg)
    else:
        step_losses, started, report = _from_files(
            adapter, features, sam, cfg, images, data or FolderOptions(Path(out) / "teacher-cache"),
            where, progress,
        )  # fmt: skip
    same = ("clip", "sam", "blocks", "batch_size", "lr", "size", "seed", "steps", "warmup")
    out = Path(out)
    precision = Precision(cfg.precision, torch.device(where.device).type)
    train_resumable(
        step_losses, out, adapter, spec, opt, sched, cfg, same, "train sam2clip", progress, stop,
        precision, where, started,
    )  # fmt: skip
    adapter.eval()
    results = report()
    if where.main:
        write_json(out / "report.json", results, indent=1)
    return results


@dataclass
class FolderOptions:
    """SAM2CLIP on a folder: where the teacher's embeddings are cached, how many images are
    held out, the DataLoader processes reading images, and Ray actors building the cache."""

    cache: Path
    val_images: int = 16
    workers: int = 0
    shard_size: int = 64
    actors: int = 0  # > 0: Ray actors build the teacher cache


def _rendered(adapter: Any, features: ClipFeatures, sam: Any, cfg: Sam2ClipConfig):
    """The shapes world's SAM2CLIP: (step losses, no loader, report) on rendered scenes."""
    from ovdet.train.shapes_sam import render_batch, scene_miou

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        start = step * cfg.batch_size
        images, *_ = render_batch(
            cfg.seed, SAM2CLIP_SPLIT_CODE, range(start, start + cfg.batch_size), cfg.size
        )
        images = images.to(sam.device)
        with torch.no_grad():
            target = sam.get_image_embeddings(normalize_sam(images))
        return {"mse": F.mse_loss(adapter(features(images)), target)}

    def report() -> dict[str, float]:
        found = {
            "val_miou_sam2clip": scene_miou(
                sam, cfg, cfg.val_scenes, lambda im: adapter(features(im.float()))
            ),
            "val_miou_sam": scene_miou(sam, cfg, cfg.val_scenes),
            "val_mse": held_out_mse(adapter, features, sam, cfg),
        }
        log.info("held-out mIoU: SAM2CLIP %.3f, SAM %.3f", *list(found.values())[:2])
        return found

    return step_losses, None, report


def _from_files(
    adapter: Any,
    features: ClipFeatures,
    sam: SamBackend,
    cfg: Sam2ClipConfig,
    images: ImageList,
    data: FolderOptions,
    where: Distributed,
    progress: bool,
):
    """SAM2CLIP on a folder: the teacher cache built (rank 0 first), the held-out split, and
    (step losses, loader start, report) over `data.pipeline`'s step batches."""
    from ovdet.data.pipeline import StartedLoader, StepBatches, as_is
    from ovdet.methods.ovsam.data import (
        TeacherImages,
        build_teacher_cache,
        split_held_out,
    )
    from ovdet.train.common import check_batch_size
    from ovdet.train.distributed import main_first

    paths = {str(k): Path(p) for k, p in zip(images.ids, images.paths, strict=True)}
    cache = main_first(
        where,
        lambda: build_teacher_cache(
            paths, sam, data.cache, data.shard_size, progress and where.main, data.actors
        ),
    )
    done = cache.done()
    train_keys, val_keys = split_held_out([k for k in paths if k in done], data.val_images)
    check_batch_size(cfg.batch_size, len(train_keys), "readable training images")
    batches = StepBatches(
        TeacherImages(paths, train_keys, data.cache, cfg.size),
        cfg.seed, cfg.batch_size, where.rank, where.world, as_is, epochs=True,
    )  # fmt: skip
    loader = StartedLoader(batches, cfg.steps, data.workers)

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        samples = loader.next_batch(step).samples
        return {"mse": F.mse_loss(*_prediction(adapter, features, samples))}

    def report() -> dict[str, Any]:
        held = TeacherImages(paths, val_keys, data.cache, cfg.size)
        return {
            "val_mse": cached_mse(adapter, features, held, cfg.batch_size) if val_keys else None,
            "val_images": len(val_keys),
            "train_images": len(train_keys),
            "skipped": len(paths) - len(done),
        }

    return step_losses, loader.start, report


def _prediction(adapter: Any, features: ClipFeatures, samples: list) -> tuple[torch.Tensor, ...]:
    """`TeacherSample`s -> the adapter's (B, C, g, g) embeddings of their CLIP levels, and the
    teacher's."""
    from ovdet.methods.ovsam.data import clip_input

    device = features.clip.device
    pixels = torch.stack([s.pixels for s in samples]).to(device)
    x = clip_input(features, pixels, [s.size for s in samples])
    target = torch.stack([s.target for s in samples]).to(device)
    return adapter(features.levels(x)), target


def _mean_squared_error(pairs: Any) -> float:
    """The mean squared error over every element of (prediction, target) batches."""
    total, count = 0.0, 0
    for pred, target in pairs:
        total += float(F.mse_loss(pred, target, reduction="sum"))
        count += target.numel()
    return total / count


@torch.no_grad()
def cached_mse(adapter: Any, features: ClipFeatures, held: Any, batch_size: int) -> float:
    """Mean squared error to the cached teacher embeddings of the `TeacherImages` `held`, in
    batches of `batch_size`."""
    adapter.eval()
    return _mean_squared_error(
        _prediction(
            adapter, features, [held[i] for i in range(start, min(len(held), start + batch_size))]
        )
        for start in range(0, len(held), batch_size)
    )


@torch.no_grad()
def held_out_mse(adapter: Any, features: ClipFeatures, sam: Any, cfg: Any, count: int = 32):
    """Mean squared error to SAM's embeddings over `count` held-out rendered scenes, in batches
    of `cfg.batch_size`."""
    from ovdet.train.shapes_sam import SAM_VAL_CODE, render_batch

    adapter.eval()

    def pairs():
        for start in range(0, count, cfg.batch_size):
            chunk = range(start, min(count, start + cfg.batch_size))
            images = render_batch(cfg.seed, SAM_VAL_CODE, chunk, cfg.size)[0].to(sam.device)
            yield adapter(features(images)), sam.get_image_embeddings(normalize_sam(images))

    return _mean_squared_error(pairs())


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
    sam = SamBackend.from_pretrained(resolve_stored(spec["sam"], folder), device=device)
    clip = load_model(resolve_stored(spec["clip"], folder), device=device)
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
        levels = self.features.levels(x)
        size = (int(image.shape[-2]), int(image.shape[-1]))
        return SamImage(self.adapter(levels), box.scale, box.resized, size, levels)
