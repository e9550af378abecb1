"""The shapes world's acceptance measurements for a CLIP: zero-shot shape and colour accuracy on
freshly drawn single-object images, and region recognition AP with ground-truth boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ovdet.data.shapes.world import CATEGORIES, COLOURS, render_scene
from ovdet.eval.recognition import clip_box_scorer, evaluate_recognizer
from ovdet.models.vlm import VisionLanguageModel
from ovdet.recognize.core import classify_images
from ovdet.types import Vocabulary
from ovdet.vocab.embed import TextEmbedder

SHAPES_VOCAB = Vocabulary(
    tuple(name for name, _, _ in CATEGORIES), tuple(syn for _, _, syn in CATEGORIES), tuple(COLOURS)
)
NOVEL = [i for i, (_, f, _) in enumerate(CATEGORIES) if f == "r"]


@dataclass
class ZeroShotReport:
    shape_top1: float  # over all categories, in [0, 100]
    novel_shape_top1: float
    base_shape_top1: float
    colour_top1: float
    images: int


def single_object_images(
    seed: int, count: int, size: int
) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """`count` single-object scenes (uniform categories): images, category indices, colours."""
    images, cats, colours = [], [], []
    for i in range(count):
        scene = render_scene(
            np.random.default_rng([seed, 99, i]),
            (size, size),
            max_objects=1,
            uniform=True,
            radius_range=(0.2 * size, 0.36 * size),
        )
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1))
        cats.append(scene.objects[0].category)
        colours.append(scene.objects[0].colour)
    return images, cats, colours


def zero_shot_report(
    model: VisionLanguageModel, seed: int = 1234, count: int = 1600, templates: str = "ensemble"
) -> ZeroShotReport:
    """Top-1 shape (names + synonyms, prompt ensemble) and colour ("<colour> object") accuracy."""
    images, cats, colours = single_object_images(seed, count, model.image_size)
    embedder = TextEmbedder(model, templates)
    shape_pred = classify_images(model, images, embedder.embed(SHAPES_VOCAB)).argmax(1)
    colour_pred = classify_images(model, images, embedder.embed_attributes(SHAPES_VOCAB)).argmax(1)
    cats_t = torch.tensor(cats)
    right = (shape_pred == cats_t).float()
    novel = torch.isin(cats_t, torch.tensor(NOVEL))
    colour_right = np.mean(
        [SHAPES_VOCAB.attributes[int(p)] == c for p, c in zip(colour_pred, colours, strict=True)]
    )
    return ZeroShotReport(
        shape_top1=float(right.mean() * 100),
        novel_shape_top1=float(right[novel].mean() * 100),
        base_shape_top1=float(right[~novel].mean() * 100),
        colour_top1=float(colour_right * 100),
        images=count,
    )


def region_recognition_report(
    model: VisionLanguageModel,
    gt: dict[str, Any],
    images_dir: str,
    method: str,
    templates: str = "ensemble",
) -> dict[str, float]:
    """AP, AP50, AP_r/c/f of naming det-val's ground-truth boxes (LVIS protocol), and s/image."""
    text = TextEmbedder(model, templates).embed(SHAPES_VOCAB)
    score = clip_box_scorer(model, text, method)  # dense: the model's dense_size (128)
    return evaluate_recognizer(gt, images_dir, score)
