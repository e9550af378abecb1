"""RKD's table in the shapes world, by one call. Every row fine-tunes the same ViLD-text
checkpoint's RoI heads (backbone and RPN frozen) on the same schedule and the same det-train
images; rows differ only in their extra losses:

  ViLD-text                 fine-tuning alone (the control)
  + L1 (RPN proposals)      point-wise distillation on the ViLD-text RPN's top-5 proposals
  + L1 (stand-in)           ... on the stand-in multi-modal detector's top-5 proposals
  RKD (L1 + IRM)            + inter-embedding relationship matching
  PIS                       pseudo-box image-level supervision from det-captions alone
  RKD + PIS
  RKD + PIS + WT            + weight transfer

Evaluated on det-val-uniform (the bars' split: about 150 objects per novel shape), det-val and,
where the world has it, det-style (LVIS protocol; AP_r is novel AP). Also: L1-only and RKD over
`seeds` seeds (mean and spread of det-val-uniform AP_r), the relation error of both on held-out
novel ground-truth boxes, and the pseudo-boxes' agreement with the true boxes of det-captions.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.data.coco import CocoDetection, letterbox
from ovdet.eval.recognition import evaluate_detector
from ovdet.experiments.vild import FineTuneWorld
from ovdet.io.atomic import write_json
from ovdet.io.images import load_image
from ovdet.losses.rkd import relation_matrix
from ovdet.methods.rkd.cache import build_pseudo_box_cache, build_region_cache
from ovdet.methods.rkd.labelers import ClipScoredLabeler, RPNProposals, make_labeler
from ovdet.methods.rkd.train import RKDTrainConfig, pseudo_boxes, train_rkd
from ovdet.methods.vild.detector import detect_image, load_detector
from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import box_iou, xywh_to_xyxy
from ovdet.recognize.crop import CropEmbedder
from ovdet.recognize.dense import DenseEmbedder
from ovdet.vocab.parse import vocabulary_from_categories

ROWS = (
    "ViLD-text",
    "+ L1 (RPN proposals)",
    "+ L1 (stand-in)",
    "RKD (L1 + IRM)",
    "PIS",
    "RKD + PIS",
    "RKD + PIS + WT",
)


@dataclass
class RKDExperiment:
    train_images: int = 1500  # det-train images every row trains on (the first ones)
    caption_images: int = 1500  # det-captions images the pseudo-boxes come from
    seeds: int = 3  # runs of L1-only and RKD for the IRM comparison
    relation_batch: int = 40  # regions per relation matrix (8 images x 5 proposals)

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(self, positive=("train_images", "caption_images", "seeds", "relation_batch"))


def reproduce_rkd(
    data: str | Path,
    out: str | Path,
    clip: VisionLanguageModel,
    cfg: RKDTrainConfig,
    exp: RKDExperiment,
    splits: tuple[str, ...] = ("det-val-uniform", "det-val", "det-style"),
) -> dict[str, Any]:
    """Build the caches, train and evaluate every row; write `out/results.json`."""
    data, out = Path(data), Path(out)
    world = FineTuneWorld.load(data, cfg.init, clip, exp.train_images, splits)
    train_gt, images, text, novel, spec = (
        world.train_gt,
        world.images,
        world.text,
        world.novel,
        world.spec,
    )
    categories = sorted(train_gt["categories"], key=lambda c: c["id"])
    vocab = vocabulary_from_categories(categories)
    proposer, _ = load_detector(cfg.init)
    dataset = CocoDetection(train_gt, images, spec["base_ids"], spec["side"])

    stand_in = make_labeler("shapes", vocab, clip, spec["templates"])
    rpn = ClipScoredLabeler(
        RPNProposals(proposer, spec), DenseEmbedder(clip), text, clip.logit_scale, "rpn"
    )
    regions = {
        "rpn": build_region_cache(rpn, clip, dataset, out / "cache" / "regions-rpn"),
        "stand-in": build_region_cache(stand_in, clip, dataset, out / "cache" / "regions-stand-in"),
    }
    items = load_captions(data / "det-captions" / "captions.json")[: exp.caption_images]
    captions = CaptionDataset(items, data / "det-captions", spec["side"])
    pseudo = build_pseudo_box_cache(stand_in, captions, vocab, out / "cache" / "pseudo")
    pis = {"captions": captions, "pseudo": pseudo, "caption_text": text}

    def run(name: str, seed: int = 0, **kw: Any) -> Path:
        folder = out / (name if seed == 0 else f"{name} seed {seed}")
        c = replace(
            cfg, seed=seed, irm_weight=kw.pop("irm", 0.0), weight_transfer=kw.pop("wt", False)
        )
        return train_rkd(train_gt, images, folder, c, clip=clip, **kw)

    irm = cfg.irm_weight
    folders = {
        "ViLD-text": run("ViLD-text"),
        "+ L1 (RPN proposals)": run("+ L1 (RPN proposals)", regions=regions["rpn"]),
        "+ L1 (stand-in)": run("+ L1 (stand-in)", regions=regions["stand-in"]),
        "RKD (L1 + IRM)": run("RKD (L1 + IRM)", regions=regions["stand-in"], irm=irm),
        "PIS": run("PIS", **pis),
        "RKD + PIS": run("RKD + PIS", regions=regions["stand-in"], irm=irm, **pis),
        "RKD + PIS + WT": run(
            "RKD + PIS + WT", regions=regions["stand-in"], irm=irm, wt=True, **pis
        ),
    }
    results: dict[str, Any] = {"rows": {}}
    for name, folder in folders.items():
        results["rows"][name] = world.evaluate(folder)
        write_json(out / "results.json", results, indent=1)
    uniform = world.splits[splits[0]]
    results["seeds"] = {}
    for name, irm_w in (("+ L1 (stand-in)", 0.0), ("RKD (L1 + IRM)", irm)):
        runs = [folders[name]] + [
            run(name, seed, regions=regions["stand-in"], irm=irm_w) for seed in range(1, exp.seeds)
        ]
        aps, errors = [], []
        for folder in runs:
            model, s = load_detector(folder)
            detect = lambda image, m=model, s=s: detect_image(m, s, image, text, novel)  # noqa: E731
            aps.append(evaluate_detector(*uniform, detect, world.ids)["APr"])
            errors.append(relation_error(model, s, clip, *uniform, novel_ids(uniform[0]), exp))
        results["seeds"][name] = {
            "APr": aps,
            "APr mean": statistics.fmean(aps),
            "APr spread": max(aps) - min(aps),
            "relation error": errors,
            "relation error mean": statistics.fmean(errors),
        }
        write_json(out / "results.json", results, indent=1)
    results["pseudo boxes"] = pseudo_box_quality(
        pseudo, data / "det-captions" / "oracle.json", items, captions, cfg.pseudo_threshold
    )
    write_json(out / "results.json", results, indent=1)
    return results


def novel_ids(gt: dict[str, Any]) -> set[int]:
    return set(gt["ovd"]["novel"])


@torch.no_grad()
def relation_error(
    model: Any,
    spec: dict[str, Any],
    clip: VisionLanguageModel,
    gt: dict[str, Any],
    images: Path,
    novel: set[int],
    exp: RKDExperiment,
) -> float:
    """Mean over batches of `relation_batch` held-out novel ground-truth boxes of
    ||rownorm(S S^T) - rownorm(T T^T)||_F, S the detector's distillation embeddings, T CLIP's
    1x crop embeddings: how well the student keeps the teacher's geometry on unseen classes."""
    crops = CropEmbedder(clip, scales=(1.0,))
    student, teacher = [], []
    by_image: dict[Any, list[list[float]]] = {}
    for a in gt["annotations"]:
        if a["category_id"] in novel:
            by_image.setdefault(a["image_id"], []).append(a["bbox"])
    files = {im["id"]: im["file_name"] for im in gt["images"]}
    for image_id in sorted(by_image):
        image = load_image(images / files[image_id])
        xyxy = xywh_to_xyxy(torch.tensor(by_image[image_id], dtype=torch.float32))
        pixels, box = letterbox(image, spec["side"])
        emb, _ = model.text_head(model.backbone(pixels), [box.boxes(xyxy)])
        student.append(emb)
        teacher.append(crops.embed(image, xyxy).cpu())
    s, t = torch.cat(student), torch.cat(teacher)
    k = min(exp.relation_batch, len(s))  # a val set with fewer novel boxes: one batch of all
    errors = [
        float((relation_matrix(s[i : i + k]) - relation_matrix(t[i : i + k])).norm())
        for i in range(0, len(s) - k + 1, k)
    ]
    return statistics.fmean(errors) if k >= 2 else float("nan")


def pseudo_box_quality(
    pseudo: Any, oracle_file: Path, items: list[Any], captions: CaptionDataset, threshold: float
) -> dict[str, float]:
    """Of the caption labels, the share given a pseudo-box above `threshold`, and of those the
    share that overlap a true object of that label at IoU >= 0.5 (det-captions' oracle boxes,
    read here and nowhere in training)."""
    oracle = json.loads(Path(oracle_file).read_text())
    order = [c["id"] for c in sorted(oracle["categories"], key=lambda c: c["id"])]
    truth: dict[Any, list[tuple[int, list[float]]]] = {}
    for a in oracle["annotations"]:
        truth.setdefault(a["image_id"], []).append((order.index(a["category_id"]), a["bbox"]))
    entries = pseudo.load()
    labels = kept = hits = 0
    for i, item in enumerate(items):
        e = entries[str(i)]
        labels += len(e["labels"])
        boxes, labs = pseudo_boxes(e, threshold)
        kept += len(labs)
        scale = captions.scale(i)
        for b, lab in zip(boxes / scale, labs.tolist(), strict=True):
            same = [
                xywh_to_xyxy(torch.tensor(bb)) for c, bb in truth.get(item.image_id, []) if c == lab
            ]
            if same and box_iou(b[None], torch.stack(same)).max() >= 0.5:
                hits += 1
    return {
        "labels": labels,
        "kept share": kept / max(1, labels),
        "kept correct (IoU >= 0.5)": hits / max(1, kept),
    }
