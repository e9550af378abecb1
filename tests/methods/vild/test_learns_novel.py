"""The measured effect ViLD exists for: distilling CLIP's crop embeddings into a detector's region
embeddings (ViLD-ensemble: a text head plus a distilled image head) lets a detector trained on
base categories only name novel objects, which ViLD-text, trained on the same base boxes, does
not. Measured as top-1 accuracy of the detector's own heads naming the ground-truth boxes of
scenes with uniformly drawn shapes (so that novel objects are many), per class, which isolates
recognition from the (shared) proposal quality. The AP comparison is the README's reproduction
table.

Both runs fine-tune the RoI heads on the bundled base-trained `shapes-vild-text`'s frozen
backbone and RPN (so a short run learns to name at all: from scratch, 70 steps at 64 px named
base shapes at chance, and the distilled run then answered one novel class for every box). The
distillation proposals come from the same checkpoint (ViLD's setting: a base-trained RPN supplies
them). Measured at 150 steps (one thread), per novel class 12-16:
- ViLD-text: 0.00 on every novel class; base classes 0.44 (class mean).
- ViLD-ensemble: 0.00, 0.00, 0.50, 0.15, 0.13 (0.16 of all novel boxes); base 0.52.
- untrained (0 steps): base 0.10; the ensemble answers novel class 13 on a fifth of the novel
  boxes and no other novel class (0.13 of all novel boxes): the bars below need base naming and
  two novel classes, so neither an untrained nor a one-class detector clears them.
At 300 steps ViLD-text starts naming novel class 15 through its text embeddings (0.19 of all
novel boxes vs the ensemble's 0.20), so the contrast is the short schedule's.
Each run is built once, by whichever test process asks first."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from novel import novel_answers, per_class
from once import built_once
from PIL import Image

from ovdet.data.shapes.generate import WorldConfig, annotations_of, category_records, generate_world
from ovdet.data.shapes.world import render_scene
from ovdet.methods.vild.detector import load_detector
from ovdet.methods.vild.model import ViLDConfig
from ovdet.methods.vild.train import ViLDTrainConfig, build_distill_cache, train_vild
from ovdet.models.loader import load_model
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories


def uniform_val(folder: Path, count: int, seed: int, size: int = 128) -> dict:
    """Scenes with uniformly drawn shapes (a third of the objects are novel), fully annotated."""
    images, anns = [], []
    for i in range(count):
        scene = render_scene(
            np.random.default_rng([seed, i]), (size, size), max_objects=4, uniform=True
        )
        name = f"{i:04d}.png"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(folder / name)
        new = annotations_of(scene, i + 1, len(anns) + 1)
        present = {a["category_id"] for a in new}
        images.append(
            {
                "id": i + 1,
                "file_name": name,
                "height": size,
                "width": size,
                "neg_category_ids": [c for c in range(1, 17) if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        anns += new
    return {"images": images, "annotations": anns, "categories": category_records()}


SIZE = 128
CFG = ViLDTrainConfig(
    steps=150,
    batch_size=8,
    checkpoint_every=150,
    distill_proposals=8,
    warmup=10,
    side=SIZE,
    init="shapes-vild-text",
    freeze_backbone=True,
)


def _build_world(folder: Path) -> None:
    generate_world(
        folder / "w",
        WorldConfig(
            seed=11,
            captions=1,
            det_train=200,
            det_val=1,
            det_style=0,
            det_captions=0,
            det_val_uniform=0,
            det_captions_companion=0,
            size=SIZE,
        ),
    )
    val = uniform_val(folder / "val", 100, seed=77, size=SIZE)
    (folder / "val.json").write_text(json.dumps(val))


def _world(tmp_path_factory, worker_id) -> tuple[Path, dict, dict]:
    root = built_once(tmp_path_factory, worker_id, "vild-novel-world", _build_world)
    train = json.loads((root / "w" / "det-train" / "annotations.json").read_text())
    return root, train, json.loads((root / "val.json").read_text())


def _train(root: Path, train: dict, folder: Path, image_weight: float) -> None:
    clip = load_model("shapes-clip")
    images = root / "w" / "det-train"
    cache = None
    if image_weight > 0:
        from ovdet.data.coco import CocoDetection

        proposer, spec = load_detector("shapes-vild-text")
        cache = build_distill_cache(
            proposer,
            clip,
            CocoDetection(train, images, spec["base_ids"], SIZE),
            folder / "cache",
            CFG.distill_proposals,
        )
    vild = ViLDConfig(
        embed_dim=clip.embed_dim, hidden=256, image_weight=image_weight, ensemble=image_weight > 0
    )
    base = train["ovd"]["base"]
    train_vild(train, images, folder / "run", clip, "shapes-clip", base, vild, CFG, distill=cache)


def _trained(tmp_path_factory, worker_id, image_weight: float) -> Path:
    root, train, _ = _world(tmp_path_factory, worker_id)
    name = "vild-novel-text" if image_weight == 0 else "vild-novel-distilled"
    return (
        built_once(
            tmp_path_factory, worker_id, name, lambda f: _train(root, train, f, image_weight)
        )
        / "run"
    )


def _accuracy(tmp_path_factory, worker_id, folder: Path) -> dict[str, dict[int, float]]:
    """Top-1 accuracy per novel and per base class on the uniform scenes' ground-truth boxes."""
    root, train, val = _world(tmp_path_factory, worker_id)
    clip = load_model("shapes-clip")
    cats = sorted(val["categories"], key=lambda c: c["id"])
    text = embed_vocabulary(clip, vocabulary_from_categories(cats), "ensemble")
    novel = torch.tensor([c["id"] not in train["ovd"]["base"] for c in cats])
    pairs, ids = novel_answers(folder, val, root / "val", text, novel)
    base = {c["id"] for c in cats} - ids
    on_novel = [t == p for t, p in pairs if t in ids]
    return {
        "novel": per_class(pairs, ids),
        "base": per_class(pairs, base),
        "all_novel": sum(on_novel) / len(on_novel),
    }


def _mean(values: dict) -> float:
    return sum(values.values()) / len(values)


@pytest.mark.slow(seconds=30)
def test_vild_text_learns_base_names_but_no_novel_one(tmp_path_factory, worker_id):
    text_only = _accuracy(tmp_path_factory, worker_id, _trained(tmp_path_factory, worker_id, 0.0))
    # measured: base 0.44 (untrained 0.10), novel 0.00: its background takes every novel shape
    assert _mean(text_only["base"]) >= 0.30, text_only
    assert text_only["all_novel"] < 0.10, text_only


@pytest.mark.slow(seconds=40)
def test_distillation_names_novel_shapes_better_than_vild_text(tmp_path_factory, worker_id):
    distilled = _accuracy(tmp_path_factory, worker_id, _trained(tmp_path_factory, worker_id, 1.0))
    text_only = _accuracy(tmp_path_factory, worker_id, _trained(tmp_path_factory, worker_id, 0.0))
    named = [c for c, acc in distilled["novel"].items() if acc >= 0.10]
    # measured: classes 14, 15, 16 (0.50, 0.15, 0.13); 0.16 of all novel boxes vs 0.00
    assert len(named) >= 2, distilled
    assert distilled["all_novel"] >= text_only["all_novel"] + 0.08, (text_only, distilled)
    assert _mean(distilled["base"]) >= 0.30, distilled
