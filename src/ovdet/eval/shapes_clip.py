"""The shapes world's acceptance measurements for a CLIP: zero-shot shape and colour accuracy on
freshly drawn single-object images, its robustness to ordinary changes of rendering (size,
background, fill, JPEG, overlap, the held-out style), and region recognition with ground-truth
boxes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ovdet.data.shapes.style import CLEAN, HELDOUT, TRAIN, Style, jpeg, render_styled
from ovdet.data.shapes.world import CATEGORIES, COLOURS, Scene, object_mask, render_scene
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


# name -> (style, radius range relative to the side, background, fill); None: the style's own
CONDITIONS: dict[str, tuple[Style, tuple[float, float], str | None, str | None]] = {
    "train style": (TRAIN, (0.2, 0.36), None, None),
    "style split": (HELDOUT, (0.2, 0.36), None, None),
    "clean": (CLEAN, (0.2, 0.36), None, "flat"),
    "small (0.10-0.16)": (CLEAN, (0.10, 0.16), None, "flat"),
    "tiny (0.06-0.10)": (CLEAN, (0.06, 0.10), None, "flat"),
    "white background": (CLEAN, (0.2, 0.36), "white", "flat"),
    "black background": (CLEAN, (0.2, 0.36), "black", "flat"),
    "textured background": (CLEAN, (0.2, 0.36), "textured", "flat"),
    "outline": (CLEAN, (0.2, 0.36), None, "outline"),
}
TEXTURED = ("noise", "leaves", "stripes")


def condition_scenes(name: str, seed: int, count: int, size: int) -> list[Scene]:
    """`count` single-object scenes of robustness condition `name` (fresh draws per seed)."""
    style, radius, bg, fill = CONDITIONS[name]
    code = list(CONDITIONS).index(name)
    scenes = []
    for i in range(count):
        rng = np.random.default_rng([seed, 98, code, i])
        b = str(rng.choice(TEXTURED)) if bg == "textured" else bg
        scenes.append(render_styled(rng, (size, size), style, 1, True, radius, b, fill))
    return scenes


def pair_scenes(seed: int, count: int, size: int, overlap: bool) -> list[Scene]:
    """`count` scenes of two shapes of different categories whose outlines overlap (`overlap`)
    or do not touch (each shape whole); each kind a draw of its own."""
    style = replace(CLEAN, fills={"flat": 1.0})
    scenes: list[Scene] = []
    k = 0
    while len(scenes) < count:
        rng = np.random.default_rng([seed, 97 if overlap else 96, k])
        k += 1
        scene = render_styled(rng, (size, size), style, 2, True, (0.2, 0.32))
        if len(scene.objects) != 2 or scene.objects[0].category == scene.objects[1].category:
            continue
        a, b = (object_mask(o, (size, size)) for o in scene.objects)
        if bool((a & b).any()) == overlap:
            scenes.append(scene)
    return scenes


# two-shape conditions: name -> whether the outlines overlap
PAIRS = {"overlapping pair (both in top 2)": True, "pair apart (both in top 2)": False}


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def robustness_report(
    model: VisionLanguageModel,
    seed: int = 4321,
    count: int = 400,
    templates: str = "ensemble",
    names: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """Shape top-1 (%) per condition of `CONDITIONS` (or of `names` only), plus the clean images
    through JPEG q75 and q30, and the two-shape scenes of `PAIRS`: 'overlapping pair' (outlines
    overlap) and 'pair apart' (they do not touch), both shapes in the top 2 (each left out when
    `names` is given and does not name it)."""
    unknown = set(names or ()) - {*CONDITIONS, *PAIRS}
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; known: {[*CONDITIONS, *PAIRS]}")
    text = TextEmbedder(model, templates).embed(SHAPES_VOCAB)
    size = model.image_size

    def top1(images: list[np.ndarray], scenes: list[Scene]) -> float:
        pred = classify_images(model, [_tensor(i) for i in images], text).argmax(1)
        truth = torch.tensor([s.objects[0].category for s in scenes])
        return float((pred == truth).float().mean() * 100)

    report = {}
    for name in (n for n in CONDITIONS if names is None or n in names):
        scenes = condition_scenes(name, seed, count, size)
        report[name] = top1([s.image for s in scenes], scenes)
        if name == "clean":
            for q in (75, 30):
                report[f"clean, JPEG q{q}"] = top1([jpeg(s.image, q) for s in scenes], scenes)
    for name, overlap in PAIRS.items():
        if names is not None and name not in names:
            continue
        pairs = pair_scenes(seed, count, size, overlap)
        top2 = classify_images(model, [_tensor(s.image) for s in pairs], text).topk(2, 1).indices
        both = [
            {o.category for o in s.objects} == set(t.tolist())
            for s, t in zip(pairs, top2, strict=True)
        ]
        report[name] = float(np.mean(both) * 100)
    return report
