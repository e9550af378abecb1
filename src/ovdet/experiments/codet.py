"""CoDet's table in the shapes world, by one call. Every row fine-tunes the same ViLD-text
checkpoint's RoI heads (backbone and RPN frozen) on the same schedule and det-train images;
rows differ in what the caption batches teach:

  ViLD-text                      no caption batches: every step is a detection batch (control)
  max-size                       Detic: the largest proposal takes the caption's concept
  max-score                      self-training: the proposal most similar to the concept
  CoDet (no text guidance)       Phi over plain cosine co-occurrence
  CoDet                          Phi over text-guided co-occurrence
  CoDet (BCE)                    ... with the paper's sigmoid BCE region-word loss
  parameter-free Phi             the mean best match over the group instead of Phi (diagnostic)

Evaluated on det-val-uniform (the bars' split), det-val and, where the world has it, det-style
(LVIS protocol; AP_r is novel AP). The pseudo-box hit rate (the chosen region overlaps an object
of the group's concept at IoU >= 0.5, from det-captions' oracle boxes, never read in training)
is measured on fixed groups with each trained row's own rule, for novel and base concepts; and
CoDet with and without text guidance is trained and measured again on the companion split,
where each novel shape brings a base partner half of the time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.experiments import asked_rows
from ovdet.experiments.vild import FineTuneWorld
from ovdet.io.atomic import write_json
from ovdet.methods.codet.concepts import ConceptIndex
from ovdet.methods.codet.cooccur import CoOccurrence, region_weights
from ovdet.methods.codet.train import CaptionGroups, CoDetTrainConfig, build_phi, train_codet
from ovdet.methods.vild.detector import load_detector
from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import box_iou, xywh_to_xyxy
from ovdet.vocab.parse import vocabulary_from_categories

# row -> what it changes in the training configuration
ROWS: dict[str, dict[str, Any]] = {
    "ViLD-text": {"caption_weight": 0.0},
    "max-size": {"pseudo": "max-size"},
    "max-score": {"pseudo": "max-score"},
    "CoDet (no text guidance)": {"pseudo": "codet", "text_guidance": False},
    "CoDet": {"pseudo": "codet", "text_guidance": True},
    "CoDet (BCE)": {"pseudo": "codet", "text_guidance": True, "loss": "bce"},
    "parameter-free Phi": {"pseudo": "parameter-free", "text_guidance": True},
}


@dataclass
class CoDetExperiment:
    train_images: int = 1500  # det-train images every row trains on (the first ones)
    caption_images: int = 2000  # caption scenes the groups are drawn from (each split)
    hit_groups: int = 20  # fixed groups per concept for the hit rate
    companion: bool = True  # also the companion split's text-guidance comparison
    rows: str = ""  # comma-separated names of the table's rows to run (empty: all)

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(self, positive=("train_images", "caption_images", "hit_groups"))
        self.row_names()  # refuses a name that is not a row

    def row_names(self) -> list[str]:
        """The rows to run, in the order asked (none asked: the table's)."""
        return asked_rows(self.rows, ROWS)


@dataclass
class CaptionSplit:
    """A caption split ready for training: images, concepts, caption embeddings, oracle."""

    folder: Path
    captions: CaptionDataset
    concepts: ConceptIndex
    caption_text: torch.Tensor
    oracle: dict[str, Any]

    @classmethod
    def load(
        cls, folder: Path, count: int, vocab: Any, clip: VisionLanguageModel, side: int
    ) -> CaptionSplit:
        items = load_captions(folder / "captions.json")[:count]
        text = clip.encode_text([item.captions[0] for item in items]).float().cpu().clone()
        oracle = json.loads((folder / "oracle.json").read_text())
        return cls(
            folder,
            CaptionDataset(items, folder, side),
            ConceptIndex.build(items, vocab),
            text,
            oracle,
        )


def load_phi(folder: Path, cfg: CoDetTrainConfig) -> CoOccurrence:
    """The trained Phi stored under `aux.phi.` in a CoDet checkpoint."""
    phi = build_phi(cfg)
    state = load_file(Path(folder) / "model.safetensors")
    phi.load_state_dict(
        {k[len("aux.phi.") :]: v.float() for k, v in state.items() if k.startswith("aux.phi.")}
    )
    return phi.eval()


HIT_GROUPS_SEED = 12345  # the fixed groups every hit rate is measured on


@torch.no_grad()
def fixed_groups(
    model: Any, cfg: CoDetTrainConfig, split: CaptionSplit, groups_per_concept: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`groups_per_concept` fixed groups of every groupable concept (the same draw for every
    checkpoint), each as (concept c, (g, R, D) region embeddings under `model`, (g, R, 4) boxes,
    (g, R) best IoU of each region with an object of c in its image, from the oracle boxes)."""
    embedder = CaptionGroups(model, split.captions, cfg)
    truth: dict[Any, list[tuple[int, list[float]]]] = {}
    order = [c["id"] for c in sorted(split.oracle["categories"], key=lambda c: c["id"])]
    for a in split.oracle["annotations"]:
        truth.setdefault(a["image_id"], []).append((order.index(a["category_id"]), a["bbox"]))
    g = torch.Generator().manual_seed(HIT_GROUPS_SEED)
    for c in split.concepts.require(cfg.group_size):
        images_of = split.concepts.images_of[c]
        for _ in range(groups_per_concept):
            pick = torch.randperm(len(images_of), generator=g)[: cfg.group_size]
            images = [images_of[int(j)] for j in pick]
            emb, boxes = embedder.embed(images)
            ious = []
            for i, b in zip(images, boxes, strict=True):
                same = [
                    xywh_to_xyxy(torch.tensor(bb, dtype=torch.float32))
                    for k, bb in truth.get(split.captions.items[i].image_id, [])
                    if k == c
                ]
                image_boxes = b / split.captions.scale(i)
                ious.append(
                    box_iou(image_boxes, torch.stack(same)).amax(-1)
                    if same
                    else torch.zeros(len(b))
                )
            yield c, emb, boxes, torch.stack(ious)


@torch.no_grad()
def hit_rate(
    folder: Path,
    cfg: CoDetTrainConfig,
    split: CaptionSplit,
    concept_text: torch.Tensor,
    novel: set[int],
    groups_per_concept: int,
) -> dict[str, float]:
    """% of queries whose chosen region (the argmax of the row's weights) overlaps an object of
    the group's concept at IoU >= 0.5, over `fixed_groups`: {"novel": ..., "base": ...} (concept
    indices in `novel` are novel)."""
    model, _ = load_detector(folder)
    phi = load_phi(folder, cfg) if cfg.pseudo == "codet" else None
    hits = {"novel": [0, 0], "base": [0, 0]}
    for c, emb, boxes, ious in fixed_groups(model, cfg, split, groups_per_concept):
        p = region_weights(cfg.pseudo, emb, boxes, concept_text[c], phi, cfg.text_guidance)
        h = hits["novel" if c in novel else "base"]
        h[0] += int((ious[torch.arange(len(ious)), p.argmax(-1)] >= 0.5).sum())
        h[1] += len(ious)
    return {k: 100.0 * h / max(1, n) for k, (h, n) in hits.items()}


def reproduce_codet(
    data: str | Path,
    out: str | Path,
    clip: VisionLanguageModel,
    cfg: CoDetTrainConfig,
    exp: CoDetExperiment,
    splits: tuple[str, ...] = ("det-val-uniform", "det-val", "det-style"),
) -> dict[str, Any]:
    """Train and evaluate every row; write `out/results.json` (after each row)."""
    data, out = Path(data), Path(out)
    world = FineTuneWorld.load(data, cfg.init, clip, exp.train_images, splits)
    categories = sorted(world.train_gt["categories"], key=lambda c: c["id"])
    vocab = vocabulary_from_categories(categories)
    text, spec = world.text, world.spec
    novel = {k for k, is_novel in enumerate(world.novel.tolist()) if is_novel}
    caption_splits = {
        "det-captions": CaptionSplit.load(
            data / "det-captions", exp.caption_images, vocab, clip, spec["side"]
        )
    }
    if exp.companion and (data / "det-captions-companion" / "captions.json").is_file():
        caption_splits["companion"] = CaptionSplit.load(
            data / "det-captions-companion", exp.caption_images, vocab, clip, spec["side"]
        )

    def run(folder: Path, c: CoDetTrainConfig, split: CaptionSplit) -> Path:
        return train_codet(
            world.train_gt,
            world.images,
            folder,
            c,
            split.captions,
            split.concepts,
            text,
            split.caption_text,
            clip=clip,
        )

    results: dict[str, Any] = {"rows": {}, "hit rate": {}, "companion": {}}
    main = caption_splits["det-captions"]
    for name in exp.row_names():
        c = replace(cfg, **ROWS[name])
        folder = run(out / name, c, main)
        results["rows"][name] = world.evaluate(folder)
        if c.caption_weight > 0:
            results["hit rate"][name] = hit_rate(folder, c, main, text, novel, exp.hit_groups)
        write_json(out / "results.json", results, indent=1)
    if "companion" in caption_splits:
        split = caption_splits["companion"]
        for name, guided in (("CoDet (no text guidance)", False), ("CoDet", True)):
            c = replace(cfg, pseudo="codet", text_guidance=guided)
            folder = run(out / "companion" / name, c, split)
            results["companion"][name] = hit_rate(folder, c, split, text, novel, exp.hit_groups)
            write_json(out / "results.json", results, indent=1)
    return results
