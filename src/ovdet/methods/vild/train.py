"""Train ViLD on a COCO-format dataset's base categories; checkpoints, resume, evaluation.

A checkpoint folder holds `spec.json` (everything needed to rebuild the model and its text
embeddings: backbone, configs, CLIP name, templates, input side, base vocabulary),
`model.safetensors`, and `train_state.pt`, the one-file resume unit (see `train.common`). Every
random choice of step k depends only on (seed, k), so a run killed at any moment and resumed ends
with the same weights as an uninterrupted one; resuming with another configuration is refused.

`init` starts a run from another checkpoint's backbone and RPN (fine-tuning, e.g. from a ViLD-text
run); with `freeze_backbone` those stay fixed and only the RoI heads train, which is ViLD's
setting when the proposals come from a base-trained RPN and is far cheaper per step.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ovdet.data.coco import CocoDetection
from ovdet.data.pipeline import (
    SAMPLINGS,
    Augment,
    StepBatches,
    StepLoader,
    aspect_groups,
    repeat_factors,
)
from ovdet.detect.build import (
    DEFAULT_OUT_FEATURES,
    NECKS,
    SHAPES,
    backbone_entry,
    describe,
    same_architecture,
)
from ovdet.detect.rpn import FPN_SIZES, RPNConfig
from ovdet.errors import OvdetError
from ovdet.methods.vild.detector import build_model, load_detector
from ovdet.methods.vild.model import ViLD, ViLDConfig
from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.levels import as_levels, image_of, stack_images
from ovdet.recognize.crop import CropEmbedder
from ovdet.train.common import check_batch_size, flushes_denormals, train_resumable, warmup_cosine
from ovdet.train.distributed import Distributed
from ovdet.train.feature_cache import ShardedCache
from ovdet.train.precision import PRECISIONS, Precision
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories


@dataclass
class ViLDTrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3  # AdamW
    weight_decay: float = 1e-4
    warmup: int = 100
    seed: int = 0
    side: int = 128  # input side (letterboxed: the long side scaled to it)
    short_side: int = 0  # >0: the short side scaled to this, the long side at most `side`
    aspect_groups: bool = False  # one orientation a batch, cut to its largest input (not square)
    checkpoint_every: int = 250
    distill_proposals: int = 32  # M cached proposals per image for ViLD-image
    templates: str = "ensemble"
    backbone: str = "shapes"  # shapes (the shapes world's net), or a transformers backbone's id
    # (alias, hub id or folder; pretrained weights)
    backbone_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])  # shapes
    out_features: list[str] = field(default_factory=lambda: list(DEFAULT_OUT_FEATURES))  # C2..C5
    freeze_at: int = 2  # stem + first stage frozen (detectron2's FREEZE_AT); 0: none
    neck: str = "fpn"  # or "c4": the RPN on C4, res5 as the RoI head (ResNet, ConvNeXt)
    fpn_channels: int = 256
    workers: int = 0  # DataLoader processes decoding and augmenting (results do not depend on it)
    flip: bool = False  # random horizontal flips
    lsj: bool = False  # large-scale jitter: scale 0.1-2.0, then crop or pad to the input side
    sampling: str = "uniform"  # "repeat-factor" (LVIS; with replacement, weights r_i), "epochs"
    repeat_threshold: float = 0.001  # t of repeat-factor sampling
    precision: str = "fp32"  # fp32, bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)
    scale_lr: bool = False  # linear scaling rule: lr is for a global batch of lr_batch
    lr_batch: int = 16
    init: str = ""  # checkpoint (folder or bundled name) whose backbone and RPN start the run
    freeze_backbone: bool = False  # keep the backbone and RPN fixed; train the RoI heads only

    def __post_init__(self) -> None:
        from ovdet.config import check_fields
        from ovdet.vocab.prompts import TEMPLATE_SETS

        check_fields(
            self,
            positive=(
                "batch_size",
                "lr",
                "side",
                "checkpoint_every",
                "distill_proposals",
                "fpn_channels",
                "repeat_threshold",
                "lr_batch",
            ),
            nonnegative=(
                "steps",
                "weight_decay",
                "warmup",
                "seed",
                "freeze_at",
                "workers",
                "short_side",
            ),
            # steps 0: the initial model
            choices={
                "templates": sorted(TEMPLATE_SETS),
                "neck": NECKS,
                "sampling": SAMPLINGS,
                "precision": PRECISIONS,
            },
        )
        if self.freeze_backbone and not self.init:
            raise OvdetError("freeze_backbone needs init: a checkpoint to take the backbone from")
        if self.aspect_groups and (self.lsj or self.sampling == "epochs"):
            raise OvdetError(
                "--aspect-groups cuts each batch to its images' letterboxed extent and draws "
                "with replacement: use it without --lsj (which trains on squares) and without "
                f"--sampling epochs (got lsj={self.lsj}, sampling={self.sampling})"
            )


def build_distill_cache(
    proposer: ViLD, clip: VisionLanguageModel, dataset: CocoDetection, folder: Path, m: int
) -> ShardedCache:
    """Top-`m` proposals of `proposer`'s (base-trained) RPN for every image, and CLIP's 1x + 1.5x
    crop embeddings of them (computed once, offline; ViLD section 3.3)."""
    cache = ShardedCache(folder)
    crops = CropEmbedder(clip)
    proposer.eval()
    device = next(proposer.parameters()).device

    def compute(i: int) -> dict[str, torch.Tensor]:
        sample = dataset[i]
        with torch.no_grad():
            feats = proposer.backbone(sample.pixels[None].to(device))
            boxes, _, _ = proposer.rpn(feats, [sample.size])
        boxes = boxes[0][:m].cpu()
        emb = crops.embed(dataset.image(i), boxes / sample.scale)
        return {"boxes": boxes, "embeddings": emb.cpu()}

    cache.build(list(range(len(dataset))), compute, metadata={"m": str(m), "clip": clip.name})
    return cache


@flushes_denormals
def train_vild(
    gt: dict[str, Any],
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    clip: VisionLanguageModel,
    clip_name: str,
    base_ids: list[int],
    vild: ViLDConfig,
    cfg: ViLDTrainConfig,
    distill: ShardedCache | None = None,
    stop: Callable[[int], bool] | None = None,
    device: str | torch.device = "cpu",
    where: Distributed | None = None,
) -> Path:
    """Train (or resume) into `out`; returns the checkpoint folder. `stop(steps done)` returning
    True checkpoints and ends the run early (see `train.common.run_steps`). `device` holds the
    model and each batch (the data, the caches and the checkpoints stay on the CPU; a run may
    resume on another device). `where`: this process's place among several (torchrun).

    The shapes world's ConvBackbone in one process draws each step's batch in the loop (the
    reproductions' path); a transformers backbone, or several processes, goes through
    `data.pipeline` (workers, flips, jitter, repeat-factor sampling, per-image randomness)."""
    where = where or Distributed(device=str(device))
    pipeline = uses_pipeline(cfg, where)
    out = Path(out)
    names = [
        c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"]) if c["id"] in base_ids
    ]
    order = [
        c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"]) if c["id"] in base_ids
    ]
    base_vocab = vocabulary_from_categories([c for c in gt["categories"] if c["id"] in base_ids])
    base_text = embed_vocabulary(clip, base_vocab, cfg.templates)
    spec = {
        "kind": "vild",
        "vild": asdict(vild),
        "rpn": asdict(RPNConfig()),
        "backbone_channels": cfg.backbone_channels,
        "clip": clip_name,
        "templates": cfg.templates,
        "side": cfg.side,
        **({"short_side": cfg.short_side} if cfg.short_side else {}),  # the letterbox rule
        "base_names": names,
        "base_ids": order,
        "train": {k: v for k, v in asdict(cfg).items() if k != "workers"},  # not a result's
    }
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed alone
    backbone = None
    if cfg.backbone != SHAPES:  # pretrained weights; FPN (one anchor size a level) or C4
        backbone, spec["backbone"] = backbone_entry(
            cfg.backbone, cfg.out_features, cfg.freeze_at, cfg.neck, cfg.fpn_channels
        )
        spec["rpn"] = asdict(RPNConfig(sizes=FPN_SIZES))
    model = build_model(spec, base_text, backbone)
    if cfg.init:
        _init_backbone(model, cfg.init, spec)
    model.to(device)
    trained = [p for n, p in model.named_parameters() if p.requires_grad and not _frozen(n, cfg)]
    dataset = CocoDetection(
        gt, images_dir, order, cfg.side, cache=not pipeline, masks=vild.mask, short=cfg.short_side
    )
    lr = cfg.lr * cfg.batch_size / cfg.lr_batch if cfg.scale_lr else cfg.lr
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    # memory-mapped, read per batch: at LVIS size the crops' embeddings do not fit in memory
    cached = distill.reader() if distill is not None else None
    frozen = None
    if cfg.freeze_backbone:
        model.backbone.requires_grad_(False)
        model.rpn.requires_grad_(False)
        frozen = FrozenFeatures(model)

    check_batch_size(cfg.batch_size, len(dataset))
    loader: list[StepLoader] = []

    def start_loader(start: int) -> None:
        if pipeline:
            weights = None  # uniform; repeat factors are read from the labels only when asked
            if cfg.sampling == "repeat-factor":
                weights = repeat_factors(dataset, cfg.repeat_threshold)
            batches = StepBatches(
                dataset,
                cfg.seed,
                cfg.batch_size,
                where.rank,
                where.world,
                Augment(flip=cfg.flip, lsj=cfg.lsj),
                weights,
                epochs=cfg.sampling == "epochs",
                groups=aspect_groups(dataset) if cfg.aspect_groups else None,
            )
            loader.append(StepLoader(batches, start, cfg.steps, cfg.workers))

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {}
        if pipeline:  # this rank's share, decoded ahead; per-image samplers
            piece = loader[0].next_batch(step)
            picked, batch = piece.indices, piece.samples
            kwargs["generators"] = piece.generators
        else:
            picked = torch.randint(len(dataset), (cfg.batch_size,)).tolist()  # dataset indices
            batch = [dataset[i] for i in picked]
        if cached is not None:
            kwargs |= {
                "distill_boxes": [cached[str(i)]["boxes"].to(device) for i in picked],
                "distill_embeddings": [cached[str(i)]["embeddings"].to(device) for i in picked],
            }
        targets = targets_on(batch, device)
        if vild.mask:
            kwargs["gt_masks"] = [s.masks.to(device) for s in batch]
        if frozen is not None:  # the fixed backbone and RPN run once per image, then are reused
            features, proposals = frozen.get(picked, batch)
            return model.head_losses(features, proposals, *targets, **kwargs)
        pixels = torch.stack([s.pixels for s in batch]).to(device)
        return model.losses(pixels, [s.size for s in batch], *targets, **kwargs)

    train_resumable(
        step_losses,
        out,
        model,
        spec,
        opt,
        sched,
        cfg,
        same=tuple(k for k in spec if k != "kind"),  # runs from before `kind` resume too
        desc=f"train ViLD (w={vild.image_weight}, ensemble={vild.ensemble})",
        stop=stop,
        precision=Precision(cfg.precision, torch.device(device).type),
        where=where,
        started=start_loader,
    )
    return out


def uses_pipeline(cfg: ViLDTrainConfig, where: Distributed) -> bool:
    """Whether a run goes through `data.pipeline`: a transformers backbone, or several
    processes. The shapes backbone in one process keeps the reproductions' in-loop sampling, and
    the pipeline's options are refused there (one line)."""
    pipeline = cfg.backbone != SHAPES or where.active
    only = {"workers": cfg.workers > 0, "flip": cfg.flip, "lsj": cfg.lsj}
    only |= {"short-side": cfg.short_side > 0, "aspect-groups": cfg.aspect_groups}
    only["sampling"] = cfg.sampling != "uniform"
    if cfg.freeze_backbone and (cfg.flip or cfg.lsj):
        raise OvdetError(
            "--freeze-backbone computes each image's features once; --flip and --lsj change "
            "them every step: use one or the other"
        )
    if not pipeline and any(only.values()):
        asked = next(k for k, v in only.items() if v)
        raise OvdetError(
            f"--{asked} needs the real-scale data pipeline: give a transformers --backbone "
            "(the shapes backbone keeps the reproductions' in-loop sampling)"
        )
    return pipeline


def targets_on(batch: list[Any], device: str | torch.device) -> tuple[list, list]:
    """Each sample's (G_i, 4) xyxy boxes and (G_i,) labels, on `device`."""
    return [s.boxes.to(device) for s in batch], [s.labels.to(device) for s in batch]


class FrozenFeatures:
    """Backbone features and RPN proposals of each image under a frozen backbone and RPN: they
    do not change during training, so each image's are computed once and kept in memory, up to
    `max_bytes` (the least recently used are dropped, and computed again when asked for). The
    shapes world's are small (C x side/8 x side/8 floats: 128 KB an image at 128 px); an FPN's at
    1024 px are about 90 MB an image, so at real scale the budget decides.
    """

    def __init__(self, model: ViLD, max_bytes: int = 4 * 2**30) -> None:
        self.model, self.max_bytes = model, max_bytes
        self.memo: OrderedDict[int, tuple[Any, torch.Tensor]] = OrderedDict()
        self.bytes = 0

    @staticmethod
    def _size(entry: tuple[Any, torch.Tensor]) -> int:
        tensors = [*as_levels(entry[0]), entry[1]]
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def get(self, picked: list[int], batch: list[Any]) -> tuple[Any, list[torch.Tensor]]:
        """(B, C, h, w) features (a list of them for a pyramid) and B (P, 4) proposal sets of
        dataset images `picked`."""
        todo = [(i, s) for i, s in zip(picked, batch, strict=True) if i not in self.memo]
        todo = list({i: s for i, s in todo}.items())
        fresh: dict[int, tuple[Any, torch.Tensor]] = {}
        if todo:
            self.model.backbone.eval()  # frozen: BatchNorm uses its running statistics
            self.model.rpn.eval()
            device = next(self.model.parameters()).device
            pixels = torch.stack([s.pixels for _, s in todo]).to(device)
            features = self.model.backbone(pixels)
            proposals, _, _ = self.model.rpn(features, [s.size for _, s in todo])
            for k, (i, _) in enumerate(todo):
                one = image_of(features, k)
                one = [f.clone() for f in one] if isinstance(one, list) else one.clone()
                fresh[i] = (one, proposals[k])
        entries = [fresh[i] if i in fresh else self.memo[i] for i in picked]
        for i in picked:
            if i in self.memo:
                self.memo.move_to_end(i)
        for i, entry in fresh.items():
            self.memo[i] = entry
            self.bytes += self._size(entry)
        while self.bytes > self.max_bytes and len(self.memo) > 1:
            _, dropped = self.memo.popitem(last=False)
            self.bytes -= self._size(dropped)
        return stack_images([e[0] for e in entries]), [e[1] for e in entries]


def _frozen(name: str, cfg: ViLDTrainConfig) -> bool:
    return cfg.freeze_backbone and name.startswith(("backbone.", "rpn."))


def _init_backbone(model: ViLD, init: str, spec: dict[str, Any]) -> None:
    """Copy the backbone and RPN weights of checkpoint `init` into `model` (heads stay fresh);
    refuse (one line, naming both) an init of another backbone or neck."""
    source, source_spec = load_detector(init)
    if not same_architecture(source_spec, spec):
        raise OvdetError(
            f"--init {init} has the backbone {describe(source_spec)}, this run "
            f"{describe(spec)}; give an init of the same backbone and neck, or none"
        )
    model.backbone.load_state_dict(source.backbone.state_dict())
    model.rpn.load_state_dict(source.rpn.state_dict())
