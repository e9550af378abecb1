"""Train CoDet (Ma et al., NeurIPS 2023; METHODS.md section 4) by fine-tuning a ViLD-text
checkpoint with region-word alignment learned from image-caption pairs alone.

Detection batches (det-train's base boxes: ViLD-text's loss) and caption batches alternate 1:1.
A caption batch is `groups` concept groups (`concepts.ConceptIndex.sample_group`) of
`group_size` images; each image's regions are its top `proposals` RPN proposals plus the whole
image, embedded by the RoI head. Each image in turn is the query: its pseudo-region is the soft
prototype of its proposals weighted by `cooccur.region_weights` (CoDet's Phi over text-guided
co-occurrence similarities between proposals, or a baseline's choice), trained with the
region-word loss; the whole-image box, never a candidate, adds Detic's image-caption loss. The
caption batch's losses are scaled by `caption_weight` (COCO 0.1).

The region-word loss takes the detector's form by default: the pseudo-region's concept among
background + the concept vocabulary, softmax cross-entropy through the detector's own classifier
(its learned background and temperature), as ovdet's RKD does for PIS. The paper's sigmoid BCE
(`loss="bce"`, `losses.codet.region_word_loss`) belongs to Detic-style detectors with no
background class; on a ViLD-text detector, whose background was trained to take every
unannotated (novel) object, it leaves the background winning at inference (measured in the
README's table).

As in ovdet's RKD, the backbone and RPN stay those of the init (frozen, features computed once
per image) so every row of a comparison fine-tunes the same RoI heads on the same schedule; the
paper trains the whole detector. A checkpoint is a ViLD checkpoint (spec "kind": "codet"), so
`ovdet detect` and `ViLDDetector` load it; Phi is stored under `aux.` for exact resume and
skipped by the loaders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ovdet.data.captions import CaptionDataset
from ovdet.data.pipeline import check_split
from ovdet.errors import OvdetError
from ovdet.losses.codet import image_caption_loss, region_word_loss
from ovdet.losses.rkd import pms_loss
from ovdet.methods.codet.concepts import ConceptIndex
from ovdet.methods.codet.cooccur import (
    PHI_INPUTS,
    PROTOTYPES,
    PSEUDO_REGIONS,
    CoOccurrence,
    hard_share,
    harden,
    prototypes,
    region_weights,
)
from ovdet.methods.vild.finetune import fine_tune_start, process_share
from ovdet.methods.vild.model import ViLD
from ovdet.methods.vild.train import FrozenFeatures, targets_on
from ovdet.models.vlm import VisionLanguageModel
from ovdet.train.common import check_batch_size, flushes_denormals, train_resumable, warmup_cosine
from ovdet.train.distributed import Distributed, all_rows, share_of_mean, whole_gradient

LOSS_FORMS = ("softmax", "bce")


@dataclass
class CoDetTrainConfig:
    init: str = "shapes-vild-text"  # the ViLD-text checkpoint fine-tuned (folder or bundled)
    steps: int = 1000  # alternating: half detection, half caption batches
    batch_size: int = 8  # detection images per detection batch
    groups: int = 2  # concept groups per caption batch
    group_size: int = 4  # g (COCO 2, LVIS 8)
    proposals: int = 16  # n top RPN proposals per caption image (COCO 32, LVIS 128)
    lr: float = 5e-4  # AdamW
    phi_lr: float = 10.0  # Phi's learning rate, relative to lr (official: 0.1 over 90k steps;
    # at 0.1 over 1,000 steps Phi's Adam steps move it about 0.015 against weights of about 0.08)
    phi_input: str = "sorted"  # each support image's similarities best first; "ordered": paper's
    prototype: str = "soft"  # the paper's sum p_i f_i; "hard": the argmax region alone, with p's
    # gradient (straight-through), a diagnostic of how much the soft mix costs; "anneal": soft
    # at the first step, hard at the last, a linear ramp between
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    checkpoint_every: int = 250
    pseudo: str = "codet"  # codet | max-size | max-score | parameter-free
    text_guidance: bool = True
    caption_weight: float = 0.1  # the caption batch's loss weight (COCO 0.1, LVIS 0.2)
    loss: str = "softmax"  # region-word loss form: "softmax" (the detector's) or "bce" (paper)
    image_caption_weight: float = 1.0  # Detic's image-caption loss inside the caption batch
    roi_batch: int = 0  # RoIs sampled per detection image; 0: the init's

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(
            self,
            positive=("batch_size", "groups", "proposals", "lr", "phi_lr", "checkpoint_every"),
            nonnegative=(
                "steps",
                "weight_decay",
                "warmup",
                "seed",
                "caption_weight",
                "image_caption_weight",
                "roi_batch",
            ),
            choices={
                "pseudo": PSEUDO_REGIONS,
                "loss": LOSS_FORMS,
                "phi_input": PHI_INPUTS,
                "prototype": PROTOTYPES,
            },
        )
        if self.group_size < 2:
            raise OvdetError(
                f"group-size must be >= 2 (a group shares a concept), got {self.group_size}"
            )
        if not self.init:
            raise OvdetError("CoDet fine-tunes a ViLD-text checkpoint: give init")


def build_phi(cfg: CoDetTrainConfig) -> CoOccurrence:
    """The run's Phi, untrained: it reads the n proposals of each image, not the whole-image
    box, so (g - 1) n similarities per proposal."""
    return CoOccurrence((cfg.group_size - 1) * cfg.proposals, cfg.proposals, cfg.phi_input)


def image_regions(proposals: torch.Tensor, size: tuple[int, int], n: int) -> torch.Tensor:
    """(P, 4) proposals, best first, of an image whose valid input area is `size` (h, w) ->
    (n + 1, 4): the top n (the whole image repeated where fewer) and the whole image last."""
    h, w = size
    whole = proposals.new_tensor([[0.0, 0.0, float(w), float(h)]])
    top = proposals[:n]
    return torch.cat([top, whole.expand(n - len(top), 4), whole])


class CaptionGroups:
    """Caption batches for CoDet: the groups' images, their regions and region embeddings."""

    def __init__(self, model: ViLD, captions: CaptionDataset, cfg: CoDetTrainConfig) -> None:
        self.model, self.captions, self.cfg = model, captions, cfg
        self.frozen = FrozenFeatures(model)

    def embed(self, images: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, R, D) region embeddings and (k, R, 4) boxes (input frame) of caption images."""
        batch = [self.captions[i] for i in images]
        features, proposals = self.frozen.get(images, batch)
        boxes = [
            image_regions(p, s.size, self.cfg.proposals)
            for p, s in zip(proposals, batch, strict=True)
        ]
        emb, _ = self.model.class_outputs(features, boxes)
        r = self.cfg.proposals + 1
        return emb.view(len(images), r, -1), torch.stack(boxes)


@flushes_denormals
def train_codet(
    gt: dict[str, Any],
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: CoDetTrainConfig,
    captions: CaptionDataset,
    concepts: ConceptIndex,
    concept_text: torch.Tensor,
    caption_text: torch.Tensor | None = None,
    stop: Callable[[int], bool] | None = None,
    clip: VisionLanguageModel | None = None,
    device: str | torch.device = "cpu",
    where: Distributed | None = None,
) -> Path:
    """Fine-tune `cfg.init` into `out`; the model and each batch on `device` (the checkpoints
    stay on the CPU). `where`: this process's place among several (torchrun): each takes its
    part of a detection batch's images and of a caption batch's concept groups; the
    image-caption loss contrasts every process's images (gathered), as in one process.

    Args:
        gt: the detection training set (its base categories are the init's).
        captions, concepts: the captioned images and the concepts their captions name.
        concept_text: (C, D) text embeddings of the concept vocabulary `concepts` indexes.
        caption_text: (N, D) CLIP text embeddings of each captioned image's first caption, for
            the image-caption loss (None: that loss is off).
        clip: the init's CLIP (default: loaded by the name in its spec), for the base classes'
            text embeddings.
    """
    out = Path(out)
    where = where or Distributed(device=str(device))
    check_split(cfg.batch_size, where.world)
    check_split(cfg.groups, where.world, "concept groups of a caption batch")
    if len(concepts.labels) != len(captions):
        raise OvdetError(
            f"the concept index covers {len(concepts.labels)} images, the captions {len(captions)}"
        )
    concepts.require(cfg.group_size)
    image_caption = caption_text is not None and cfg.image_caption_weight > 0
    fields = asdict(cfg) | {"image_caption": image_caption}
    model, spec, dataset = fine_tune_start(
        cfg.init, cfg.seed, gt, images_dir, "codet", fields, clip, cfg.roi_batch
    )
    r = cfg.proposals + 1  # regions per caption image: the proposals and the whole image
    phi = build_phi(cfg)
    model.aux = nn.ModuleDict({"phi": phi})  # training-only; loaders skip `aux.`
    model.to(device)
    mine = process_share(spec, where, cfg.seed)  # this process's images (groups) of a step
    concept_text = concept_text.to(device)
    caption_text = caption_text.to(device) if caption_text is not None else None
    heads = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("aux.")]
    opt = torch.optim.AdamW(
        [{"params": heads}, {"params": list(phi.parameters()), "lr": cfg.lr * cfg.phi_lr}],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    box_features = FrozenFeatures(model)
    groups = CaptionGroups(model, captions, cfg)

    check_batch_size(cfg.batch_size, len(dataset))

    def box_batch(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        drawn = torch.randint(len(dataset), (cfg.batch_size,), generator=g).tolist()
        picked, generators = mine(step, drawn)
        batch = [dataset[i] for i in picked]
        features, proposals = box_features.get(picked, batch)
        targets = targets_on(batch, device)
        return model.head_losses(features, proposals, *targets, generators=generators)

    def caption_batch(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        every = [concepts.sample_group(cfg.group_size, g) for _ in range(cfg.groups)]
        drawn, _ = mine(step, every)
        images = [i for _, group in drawn for i in group]
        emb, boxes = groups.embed(images)
        emb = emb.view(len(drawn), cfg.group_size, r, -1)
        boxes = boxes.view(len(drawn), cfg.group_size, r, 4)
        weights = [
            region_weights(cfg.pseudo, emb[k], boxes[k], concept_text[c], phi, cfg.text_guidance)
            for k, (c, _) in enumerate(drawn)
        ]
        hard = hard_share(cfg.prototype, step, cfg.steps)
        if hard > 0:  # the baselines' weights are one-hot already
            weights = [harden(w, hard) for w in weights]
        pseudo = [prototypes(emb[k], w) for k, w in enumerate(weights)]
        labels = torch.tensor([c for c, _ in drawn], device=device)
        labels = labels.repeat_interleave(cfg.group_size)
        pseudo = torch.cat(pseudo)
        if cfg.loss == "softmax":  # the concept among background + the concept vocabulary
            logits = model.classifier(pseudo, concept_text, background=True)
            rw = pms_loss(logits, labels + 1, cfg.caption_weight)
        else:
            rw = cfg.caption_weight * region_word_loss(pseudo, concept_text, labels)
        losses = {"region_word": share_of_mean(rw, len(labels), where)}
        if image_caption:  # contrasted with every process's images
            whole = all_rows(emb[:, :, -1].reshape(len(images), -1), where)
            every_image = [i for _, group in every for i in group]
            ic = image_caption_loss(whole, caption_text[every_image])
            losses["image_caption"] = (
                cfg.caption_weight * cfg.image_caption_weight * whole_gradient(ic, where)
            )
        return losses

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        if cfg.caption_weight > 0 and step % 2 == 1:
            return caption_batch(step, g)
        return box_batch(step, g)  # caption weight 0: a detection batch every step (the control)

    if cfg.caption_weight == 0:
        name = "no caption batches"
    elif cfg.pseudo in ("codet", "parameter-free"):
        name = f"{cfg.pseudo}, {'' if cfg.text_guidance else 'no '}text guidance, {cfg.loss}"
    else:
        name = f"{cfg.pseudo}, {cfg.loss}"
    if cfg.prototype != "soft" and cfg.caption_weight > 0:
        name += f", {cfg.prototype} prototype"
    train_resumable(
        step_losses,
        out,
        model,
        spec,
        opt,
        sched,
        cfg,
        same=tuple(spec),
        desc=f"train CoDet ({name})",
        stop=stop,
        where=where,
    )
    return out
