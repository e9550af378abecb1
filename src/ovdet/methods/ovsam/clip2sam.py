"""CLIP2SAM: fine-tune SAM's mask decoder on the SAM2CLIP embeddings and train the recognition
head on base classes, with box and point prompts; `OVSam` then segments and names from prompts
with one CLIP pass per image.

Training (a COCO-format set's instance masks, or the shapes world's det-train scenes; base
classes only; CLIP, the adapter and SAM's prompt encoder frozen): each base object is prompted
by its jittered box or by a random pixel of its mask (half each); loss = 2 x cross-entropy
(background + base classes, background weighted 0.1) + 5 x (mask BCE + dice) + the IoU head's
MSE. A checkpoint holds the head and the decoder (`model.safetensors`) and `spec.json` (kind
"ovsam", the SAM2CLIP run it builds on, the vocabulary and its base names).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ovdet.methods.ovsam.head import (
    BACKGROUND_WEIGHT,
    RecognitionHead,
    class_logits,
    geometric_ensemble,
    recognition_loss,
)
from ovdet.models.sam import SamImage
from ovdet.recognize.inputs import ImageInput, as_image, as_regions
from ovdet.types import Regions, Vocabulary
from ovdet.vocab.parse import VocabularyInput, as_vocabulary

MAX_PROMPTS = 40  # per image, as the paper


@dataclass
class Clip2SamConfig:
    sam2clip: str = "shapes-sam2clip"  # a trained SAM2CLIP folder, or the bundled one
    steps: int = 800
    batch_size: int = 8
    lr: float = 1e-3  # the head (AdamW)
    decoder_lr: float = 1e-4  # SAM's mask decoder
    weight_decay: float = 0.01
    warmup: int = 50
    seed: int = 0
    world_seed: int = 0  # the shapes world whose det-train scenes are drawn
    width: int = 64  # FPN width
    level: int = 2  # the pooled FPN level (stride 4 for shapes-clip)
    pool: int = 12
    templates: str = "ensemble"
    box_noise: float = 0.1
    checkpoint_every: int = 200
    precision: str = "fp32"  # fp32, bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)

    def __post_init__(self) -> None:
        from ovdet.config import check_fields
        from ovdet.train.precision import PRECISIONS

        check_fields(
            self,
            positive=("batch_size", "lr", "decoder_lr", "width", "pool"),
            nonnegative=("steps", "weight_decay", "warmup", "seed", "world_seed", "level",
                         "box_noise", "checkpoint_every"),
            choices={"precision": PRECISIONS},
        )  # fmt: skip


class Clip2Sam(nn.Module):
    """The trained parts: the recognition head (with its FPN) and SAM's mask decoder."""

    def __init__(self, head: RecognitionHead, decoder: nn.Module) -> None:
        super().__init__()
        self.head, self.decoder = head, decoder


def build_head(backend: Any, size: int, spec: dict[str, Any]) -> RecognitionHead:
    """The recognition head over `backend`'s CLIP levels at side `size`, sized by a CLIP2SAM
    config or spec (its width, pooled level and pool)."""
    channels, strides = backend.features.layout(size)
    return RecognitionHead(
        channels, strides, spec["width"], backend.clip.embed_dim, spec["level"], spec["pool"]
    )


def shapes_vocabulary() -> tuple[Vocabulary, torch.Tensor]:
    """The shapes world's categories as a Vocabulary and their (C,) novel (rare) mask."""
    from ovdet.data.shapes.world import CATEGORIES

    vocab = Vocabulary(tuple(n for n, _, _ in CATEGORIES), tuple(s for _, _, s in CATEGORIES))
    return vocab, torch.tensor([f == "r" for _, f, _ in CATEGORIES])


def shapes_base_names() -> list[str]:
    """The shapes world's base class names (a checkpoint trained before specs named them)."""
    vocab, novel = shapes_vocabulary()
    return [n for n, r in zip(vocab.names, novel.tolist(), strict=True) if not r]


def scene_prompts(scene: Any, novel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    """A rendered scene's base objects -> (n, 4) boxes, (n, S, S) masks, their category indices
    (novel objects are not prompted: their classes are never annotated)."""
    from ovdet.ops.masks import masks_to_boxes

    keep = [
        i for i, o in enumerate(scene.objects) if not novel[o.category] and scene.masks[i].any()
    ][:MAX_PROMPTS]
    if not keep:
        return torch.zeros(0, 4), torch.zeros(0, *scene.image.shape[:2], dtype=torch.bool), []
    masks = torch.from_numpy(np.stack([scene.masks[i] for i in keep]))
    return masks_to_boxes(masks).float(), masks, [scene.objects[i].category for i in keep]


@dataclass
class Clip2SamData:
    """CLIP2SAM on a COCO-format set with instance masks (polygons or RLE): its categories are
    the vocabulary, `base_ids` the ones trained on (the others are novel, their annotations
    unused), `workers` DataLoader processes read the images."""

    gt: dict[str, Any]
    images: Path
    base_ids: list[int]
    workers: int = 0

    def vocabulary(self) -> tuple[Vocabulary, torch.Tensor]:
        """The file's categories in id order, and their (C,) novel mask."""
        from ovdet.vocab.parse import vocabulary_from_categories

        vocab = vocabulary_from_categories(self.gt["categories"], "--gt")
        ids = sorted(c["id"] for c in self.gt["categories"])
        return vocab, torch.tensor([i not in set(self.base_ids) for i in ids])


def train_clip2sam(
    out: str | os.PathLike,
    cfg: Clip2SamConfig,
    progress: bool = True,
    stop: Any = None,
    data: Clip2SamData | None = None,
    where: Any = None,
) -> Path:
    """Train CLIP2SAM into `out` (resumes a run there): on the shapes world's det-train scenes
    (rendered in order), or on `data`'s COCO instances (`data.pipeline`'s step batches in
    shuffled passes, each image with its own generator; torchrun's processes (`where`) take a
    share each)."""
    from ovdet.methods.ovsam.sam2clip import load_sam2clip
    from ovdet.models.registry import stored_name
    from ovdet.train.common import flush_denormals, train_resumable, warmup_cosine
    from ovdet.train.distributed import Distributed
    from ovdet.train.precision import Precision
    from ovdet.vocab.embed import TextEmbedder

    where = where or Distributed()
    torch.manual_seed(cfg.seed)
    backend, s2c_spec = load_sam2clip(cfg.sam2clip, device=where.device)
    sam = backend.model
    sam.requires_grad_(False)
    sam.mask_decoder.requires_grad_(True).train()
    vocab, novel = shapes_vocabulary() if data is None else data.vocabulary()
    base = (~novel).nonzero()[:, 0]
    text = TextEmbedder(backend.clip, cfg.templates).embed(vocab)[base].to(where.device)
    model = Clip2Sam(build_head(backend, s2c_spec["size"], asdict(cfg)), sam.mask_decoder)
    model.to(where.device)
    opt = torch.optim.AdamW(
        [
            {"params": model.head.parameters(), "lr": cfg.lr},
            {"params": sam.mask_decoder.parameters(), "lr": cfg.decoder_lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    size = s2c_spec["size"]
    batch_of, started = _batches(cfg, data, novel, size, where)

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        samples, generators = batch_of(step, g)
        return clip2sam_losses(
            backend, model.head, text, samples, generators, cfg.box_noise, where.world
        )

    spec = {
        "kind": "ovsam",
        **asdict(cfg),
        "sam2clip": stored_name(cfg.sam2clip),  # loads from any working directory
        "sam2clip_spec": s2c_spec,
        "vocabulary": {"names": list(vocab.names), "synonyms": [list(s) for s in vocab.synonyms]},
        "base_names": [vocab.names[int(i)] for i in base],
    }
    same = ("sam2clip", "batch_size", "lr", "decoder_lr", "seed", "world_seed", "width",
            "level", "pool", "templates", "steps", "warmup", "base_names")  # fmt: skip
    out = Path(out)
    precision = Precision(cfg.precision, torch.device(where.device).type)
    with flush_denormals():
        train_resumable(
            step_losses, out, model, spec, opt, sched, cfg, same, "train clip2sam", progress,
            stop, precision, where, started,
        )  # fmt: skip
    return out


def _batches(cfg: Clip2SamConfig, data: Clip2SamData | None, novel: torch.Tensor, size, where):
    """(step, step generator) -> (this process's `Sample`s, one generator each), and the
    loader's start hook: the shapes world's det-train scenes in order sharing the step's
    generator (one process), or `data`'s images drawn by `data.pipeline`."""
    if data is None:
        from ovdet.data.shapes.generate import WorldConfig
        from ovdet.errors import OvdetError
        from ovdet.methods.ovsam.data import rendered_samples

        if where.active:
            raise OvdetError("the shapes world's rendered CLIP2SAM trains in one process")
        world = WorldConfig(seed=cfg.world_seed)

        def rendered(step: int, g: torch.Generator) -> tuple[list, list]:
            first = step * cfg.batch_size
            indices = list(range(first, first + cfg.batch_size))
            return rendered_samples(world, indices, novel), [g] * cfg.batch_size

        return rendered, None
    from ovdet.data.coco import CocoDetection
    from ovdet.data.pipeline import StartedLoader, StepBatches, as_is
    from ovdet.train.common import check_batch_size

    dataset = CocoDetection(
        data.gt, data.images, sorted(data.base_ids), size, cache=False, masks=True, normalize=None
    )
    check_batch_size(cfg.batch_size, len(dataset))
    batches = StepBatches(
        dataset, cfg.seed, cfg.batch_size, where.rank, where.world, as_is, epochs=True
    )
    loader = StartedLoader(batches, cfg.steps, data.workers)

    def from_files(step: int, g: torch.Generator) -> tuple[list, list]:
        batch = loader.next_batch(step)
        return batch.samples, batch.generators

    return from_files, loader.start


def prompts_of(sample: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training `Sample`'s prompted objects: those whose mask is not empty in the input, at
    most MAX_PROMPTS -> (n, 4) boxes, (n, S, S) masks, (n,) base-class indices."""
    keep = sample.masks.flatten(1).any(1).nonzero()[:, 0][:MAX_PROMPTS]
    return sample.boxes[keep].float(), sample.masks[keep], sample.labels[keep]


def clip2sam_losses(
    backend: Any,
    head: RecognitionHead,
    text: torch.Tensor,
    samples: list,
    generators: list[torch.Generator],
    box_noise: float,
    world: int = 1,
) -> dict[str, torch.Tensor]:
    """One batch's CLIP2SAM losses. `samples` hold (3, S, S) letterboxed pixels in [0, 255] with
    their base objects' boxes, masks and base-class indices; each object is prompted by its
    jittered box or by a random pixel of its mask (half each, drawn from its image's generator).
    -> {"cls": 2 x CE over background + base classes (`text` (C_base, D)), "mask": 5 x (BCE +
    dice), "iou": the IoU head's MSE}. With `world` > 1 processes, each normalises by the whole
    batch's object count and class weight (their shares differ), so the averaged gradients are
    one process's."""
    from ovdet.methods.ovsam.data import clip_input
    from ovdet.train.shapes_sam import _decode, jitter, mask_losses, random_points

    sam, device = backend.model, backend.device
    size = samples[0].pixels.shape[-1]
    pixels = torch.stack([s.pixels for s in samples]).to(device)
    with torch.no_grad():
        levels = backend.features.levels(
            clip_input(backend.features, pixels, [s.size for s in samples])
        )
        emb = backend.adapter(levels)
    mask_terms, iou_terms, boxes, labels = [], [], [], []
    for i, (sample, g) in enumerate(zip(samples, generators, strict=True)):
        xyxy, masks, cats = prompts_of(sample)
        boxes.append(xyxy.to(device))
        labels += (cats + 1).tolist()
        if not len(cats):
            continue
        as_point = torch.rand(len(cats), generator=g) < 0.5
        for pick, kind in ((~as_point, "boxes"), (as_point, "points")):
            if not pick.any():
                continue
            if kind == "boxes":
                prompt = {"boxes": jitter(xyxy[pick][None], box_noise, size, g).to(device)}
            else:
                prompt = {"points": random_points(masks[pick][None], g).to(device)}
            logits, iou_pred = _decode(sam, emb[i : i + 1], size, **prompt)
            valid = torch.ones(int(pick.sum()), dtype=torch.bool, device=device)
            m, u = mask_losses(logits[:, 0], masks[pick].to(device), iou_pred[:, 0], valid)
            mask_terms.append(m * int(pick.sum()))
            iou_terms.append(u * int(pick.sum()))
    logits = class_logits(head(levels, boxes), text)
    labels = torch.tensor(labels, dtype=torch.long, device=device)
    if world > 1:
        return _shared_losses(logits, labels, mask_terms, iou_terms, world)
    n = max(1, len(labels))
    return {
        "cls": 2 * recognition_loss(logits, labels),
        "mask": 5 * sum(mask_terms) / n,
        "iou": sum(iou_terms) / n,
    }


def _shared_losses(logits, labels, mask_terms, iou_terms, world: int) -> dict[str, torch.Tensor]:
    """`clip2sam_losses`' terms normalised over every process's objects (see its docstring)."""
    from ovdet.train.distributed import global_sum

    weight = torch.ones(logits.shape[1], device=logits.device)
    weight[0] = BACKGROUND_WEIGHT
    ce = F.cross_entropy(logits, labels, weight=weight, reduction="sum")
    weights = global_sum(weight[labels].sum(), world).clamp(min=1e-12).to(logits)
    n = global_sum(len(labels), world).clamp(min=1).to(logits)
    return {
        "cls": 2 * ce * world / weights,
        "mask": 5 * sum(mask_terms) * world / n,
        "iou": sum(iou_terms) * world / n,
    }


class OVSam:
    """Open-Vocabulary SAM: one CLIP pass per image; masks from SAM's decoder on the SAM2CLIP
    embeddings, names from the recognition head ensembled with frozen CLIP's region features.

    Args:
        folder: a `train_clip2sam` checkpoint (it names its SAM2CLIP run).
        device: torch device.
        text_cache: a `TextEmbeddingCache`, None, or "default".
    """

    def __init__(
        self, folder: str | os.PathLike, device: str | torch.device = "cpu", text_cache="default"
    ) -> None:
        from safetensors.torch import load_file

        from ovdet.errors import FormatError
        from ovdet.methods.ovsam.sam2clip import load_sam2clip
        from ovdet.models.bundled import checkpoint_folder, spec_kind
        from ovdet.models.registry import resolve_stored
        from ovdet.recognize.dense import DenseEmbedder
        from ovdet.vocab.cache import resolve_cache
        from ovdet.vocab.embed import TextEmbedder

        name, folder = str(folder), checkpoint_folder(folder)
        if not (folder / "spec.json").is_file():
            raise FormatError(
                f"{name} is not an Open-Vocabulary SAM checkpoint (no {folder}/spec.json; train "
                "one with ovdet shapes train-clip2sam, or use the bundled shapes-ovsam)"
            )
        self.spec = json.loads((folder / "spec.json").read_text())
        if self.spec.get("kind") != "ovsam":
            kind = spec_kind(self.spec) or "unknown"
            raise FormatError(
                f"{name} is a {kind} checkpoint, not an Open-Vocabulary SAM one (ovdet shapes "
                "train-clip2sam, or the bundled shapes-ovsam)"
            )
        self.sam2clip = resolve_stored(self.spec["sam2clip"], folder)  # e.g. a pushed run's
        self.backend, s2c = load_sam2clip(self.sam2clip, device=device)
        self.clip = self.backend.clip
        head = build_head(self.backend, s2c["size"], self.spec)
        self.model = Clip2Sam(head, self.backend.model.mask_decoder)
        self.model.load_state_dict(load_file(folder / "model.safetensors"))
        self.model.to(device).eval()
        self.text = TextEmbedder(self.clip, self.spec["templates"], resolve_cache(text_cache))
        self.dense = DenseEmbedder(self.clip)
        self._memo: tuple[Any, torch.Tensor] | None = None
        self.base_names = self.spec.get("base_names") or shapes_base_names()

    @torch.inference_mode()
    def probabilities(
        self,
        image: torch.Tensor,
        xyxy: torch.Tensor,
        vocab: Vocabulary,
        state: SamImage | None = None,
    ) -> dict[str, torch.Tensor]:
        """(N, 4) boxes in image pixels -> (N, C) class probabilities of the head ("head"), of
        frozen CLIP pooled in the box ("clip", feature-crop) and their ensemble ("ovsam"), and
        the (N, D) CLIP region embeddings ("embeddings", for free-text re-query). `state`: the
        image's `backend.set_image`, whose CLIP levels the head reads instead of a second pass."""
        from ovdet.ops.letterbox import Letterbox
        from ovdet.recognize.core import class_probabilities

        text = self._text_of(vocab)
        box = Letterbox.fit(*image.shape[-2:], self.backend.image_size)
        if state is not None and state.features is not None:
            levels = state.features
        else:
            x = box.image(image, "bilinear", self.backend.features.normalize, self.backend.device)
            levels = self.backend.features.levels(x)
        q = class_logits(self.model.head(levels, [box.boxes(xyxy.float())]), text)
        q = q[:, 1:].softmax(-1)  # over the vocabulary: the background only gates training
        region = self.dense.embed(image, xyxy)
        c = class_probabilities(region, text, self.clip.logit_scale)
        novel = vocab.novel_mask(self.base_names)
        ovsam = geometric_ensemble(q, c.to(q), novel)
        return {"head": q, "clip": c, "ovsam": ovsam, "embeddings": region.cpu()}

    def _text_of(self, vocab: Vocabulary) -> torch.Tensor:
        """(C, D) text embeddings, kept for the last vocabulary (prompts of one image, or a whole
        evaluation, ask for the same vocabulary again and again)."""
        key = (vocab.names, vocab.synonyms)
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self.text.embed(vocab))
        return self._memo[1]

    def recognize_regions(
        self, image: ImageInput, regions: Regions | torch.Tensor, vocab: VocabularyInput
    ) -> Regions:
        """The `Recognizer` protocol: box prompts -> masks, labels and scores (inputs as
        `RegionSpotRecognizer.recognize_regions`')."""
        image, vocab = as_image(image), as_vocabulary(vocab)
        regions = as_regions(regions, image)
        state = self.backend.set_image(image)
        masks = self.backend.predict_boxes(state, regions.xyxy).masks
        return self._named(image, regions.xyxy, masks, vocab, state)

    def segment_points(
        self, image: ImageInput, xy: torch.Tensor, vocab: VocabularyInput
    ) -> Regions:
        """(N, 2) positive points -> one mask each (the best of SAM's three), named."""
        from ovdet.ops.masks import point_region_boxes

        image, vocab = as_image(image), as_vocabulary(vocab)
        xy = torch.as_tensor(xy, dtype=torch.float32).reshape(-1, 2)

        state = self.backend.set_image(image)
        masks = self.backend.point_masks(state, xy)
        return self._named(image, point_region_boxes(masks, xy, 4), masks, vocab, state)

    def _named(self, image, xyxy, masks, vocab, state: SamImage) -> Regions:
        found = self.probabilities(image, xyxy, vocab, state)
        scores, labels = found["ovsam"].max(1)
        return Regions(
            xyxy,
            (int(image.shape[-2]), int(image.shape[-1])),
            scores=scores,
            labels=labels,
            masks=masks.cpu(),
            embeddings=found["embeddings"],
            data={"class_scores": found["ovsam"]},
        )
