"""ViLD's table in the shapes world, by one call: CLIP on cropped regions, ViLD-text, ViLD-image,
ViLD (w > 0) and ViLD-ensemble, trained on det-train's base categories and evaluated on det-val
(LVIS protocol: AP_r is the novel AP), with each method's seconds per image; and, where the
world has it, on det-style (the held-out renderer), as each row's "style" entry.

Order: ViLD-text first (its base-trained RPN also supplies the proposals of the CLIP-on-crops
baseline and of the ViLD-image cache), then the distillation cache, then the other three.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ovdet.data.coco import CocoDetection, letterbox
from ovdet.eval.recognition import evaluate_detector
from ovdet.experiments import asked_rows
from ovdet.io.atomic import write_json
from ovdet.methods.vild.detector import detect_image, load_detector
from ovdet.methods.vild.model import ViLD, ViLDConfig, select_detections
from ovdet.methods.vild.train import ViLDTrainConfig, build_distill_cache, train_vild
from ovdet.models.vlm import VisionLanguageModel
from ovdet.recognize.core import class_probabilities
from ovdet.recognize.crop import CropEmbedder
from ovdet.types import Regions
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories

METHODS = ("ViLD-text", "ViLD-image", "ViLD", "ViLD-ensemble")
CROPS = "CLIP on cropped regions"
ROWS = (CROPS, *METHODS)


def row_names(rows: str) -> list[str]:
    """Comma-separated row names -> the rows to run in the table's order (empty: all of them);
    an unknown name is refused with the list."""
    asked = asked_rows(rows, ROWS)
    return [r for r in ROWS if r in asked]


def clip_on_crops(
    proposer: ViLD,
    spec: dict[str, Any],
    clip: VisionLanguageModel,
    text: torch.Tensor,
    top: int = 100,
    scales: tuple[float, ...] = (1.0, 1.5),
):
    """R-CNN-style baseline: the RPN's top proposals, each named by CLIP on its crops at `scales`
    (ViLD's 1x + 1.5x by default; RKD's teacher is the 1x crop alone)."""
    crops = CropEmbedder(clip, scales)

    @torch.no_grad()
    def detect(image: torch.Tensor) -> Regions:
        pixels, box = letterbox(image, spec["side"])
        boxes, objectness, _ = proposer.rpn(proposer.backbone(pixels), [box.resized])
        boxes, objectness = boxes[0][:top], objectness[0][:top]
        xyxy = box.invert_boxes(boxes)
        p = class_probabilities(crops.embed(image, xyxy).cpu(), text, clip.logit_scale)
        rows, cls, s = select_detections(xyxy, p, objectness, proposer.config)
        return Regions(xyxy[rows], tuple(image.shape[-2:]), scores=s, labels=cls)

    return detect


def reproduce_vild(
    data: str | Path,
    out: str | Path,
    clip: VisionLanguageModel,
    clip_name: str,
    cfg: ViLDTrainConfig,
    image_weight: float = 0.5,
    rows: str = "",
) -> dict[str, dict[str, float]]:
    """Train and evaluate every method (or the comma-separated `rows`; ViLD-text is trained
    anyway, as the others' proposer); write `out/results.json` and return the table."""
    wanted = row_names(rows)
    data, out = Path(data), Path(out)
    from ovdet.eval.data import load_gt

    train_gt = load_gt(data / "det-train" / "annotations.json")
    val_gt = load_gt(data / "det-val" / "annotations.json")
    splits = eval_splits(data)
    base = train_gt["ovd"]["base"]
    categories = sorted(val_gt["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    text = embed_vocabulary(clip, vocabulary_from_categories(categories), cfg.templates)
    novel = torch.tensor([c["id"] not in base for c in categories])
    vild = ViLDConfig(embed_dim=clip.embed_dim)
    configs = {
        "ViLD-text": replace(vild, image_weight=0.0),
        "ViLD-image": replace(vild, image_weight=1.0, text_weight=0.0),
        "ViLD": replace(vild, image_weight=image_weight),
        "ViLD-ensemble": replace(vild, image_weight=image_weight, ensemble=True),
    }
    results: dict[str, dict[str, float]] = {}
    images = data / "det-train"
    folder = train_vild(
        train_gt, images, out / "ViLD-text", clip, clip_name, base, configs["ViLD-text"], cfg
    )
    proposer, spec = load_detector(folder)
    if CROPS in wanted:
        results[CROPS] = evaluate_on_splits(splits, clip_on_crops(proposer, spec, clip, text), ids)
    cache = None
    if set(wanted) & set(METHODS[1:]):
        dataset = CocoDetection(train_gt, images, spec["base_ids"], cfg.side)
        cache = build_distill_cache(
            proposer, clip, dataset, out / "distill-cache", cfg.distill_proposals
        )
    for name in (m for m in METHODS if m in wanted):
        if name != "ViLD-text":
            train_vild(
                train_gt,
                images,
                out / name,
                clip,
                clip_name,
                base,
                configs[name],
                cfg,
                distill=cache,
            )
        model, spec = load_detector(out / name)
        results[name] = evaluate_on_splits(
            splits, lambda image, m=model, s=spec: detect_image(m, s, image, text, novel), ids
        )
        write_json(out / "results.json", results, indent=1)
    return results


def eval_splits(
    data: Path, names: tuple[str, ...] = ("det-val", "det-style")
) -> dict[str, tuple[dict[str, Any], Path]]:
    """The first of `names` (required) and each other one the world has with images:
    name -> (ground truth, images folder)."""
    from ovdet.errors import OvdetError
    from ovdet.eval.data import load_gt

    out = {}
    for name in names:
        gt_file = Path(data) / name / "annotations.json"
        if not gt_file.is_file() and name == names[0]:
            raise OvdetError(
                f"{data} has no {name} split; generate a world that has one: "
                f"ovdet shapes generate --out {data}"
            )
        if gt_file.is_file() and (name == names[0] or load_gt(gt_file)["images"]):
            out[name] = (load_gt(gt_file), Path(data) / name)
    return out


def first_images(gt: dict[str, Any], count: int) -> dict[str, Any]:
    """`gt` restricted to its first `count` images by id, with their annotations."""
    keep = {im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])[:count]}
    return {
        **gt,
        "images": [im for im in gt["images"] if im["id"] in keep],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in keep],
    }


@dataclass
class FineTuneWorld:
    """What a fine-tuning reproduction (RKD, CoDet) shares: the first det-train images, every
    category's id and (C, D) text embedding under the init's templates, the (C,) novel mask, and
    the evaluation splits the world has."""

    train_gt: dict[str, Any]
    images: Path
    ids: list[int]
    text: torch.Tensor
    novel: torch.Tensor
    spec: dict[str, Any]
    splits: dict[str, tuple[dict[str, Any], Path]]

    @classmethod
    def load(
        cls, data: Path, init: str, clip: Any, train_images: int, splits: tuple[str, ...]
    ) -> FineTuneWorld:
        from ovdet.eval.data import load_gt
        from ovdet.vocab.embed import embed_vocabulary
        from ovdet.vocab.parse import vocabulary_from_categories

        train_gt = first_images(load_gt(data / "det-train" / "annotations.json"), train_images)
        categories = sorted(train_gt["categories"], key=lambda c: c["id"])
        _, spec = load_detector(init)
        text = embed_vocabulary(clip, vocabulary_from_categories(categories), spec["templates"])
        return cls(
            train_gt,
            data / "det-train",
            [c["id"] for c in categories],
            text.clone(),
            torch.tensor([c["id"] not in train_gt["ovd"]["base"] for c in categories]),
            spec,
            eval_splits(data, splits),
        )

    def evaluate(self, folder: Path) -> dict[str, dict[str, float]]:
        """split -> LVIS-protocol row of the ViLD-family checkpoint in `folder`."""
        model, spec = load_detector(folder)

        def detect(image: torch.Tensor) -> Any:
            return detect_image(model, spec, image, self.text, self.novel)

        return {
            split: evaluate_detector(gt, images, detect, self.ids)
            for split, (gt, images) in self.splits.items()
        }


def with_style(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """det-val's row, with det-style's under "style" where there is one."""
    return rows["det-val"] | ({"style": rows["det-style"]} if "det-style" in rows else {})


def evaluate_on_splits(
    splits: dict[str, tuple[dict[str, Any], Path]], detect: Any, ids: list[int]
) -> dict[str, Any]:
    """`detect` evaluated on every split, as `with_style` rows."""
    return with_style(
        {name: evaluate_detector(gt, images, detect, ids) for name, (gt, images) in splits.items()}
    )
