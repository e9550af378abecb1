"""The measured effect ViLD exists for: distilling CLIP's crop embeddings into the detector's
region embeddings (here ViLD-ensemble: a text head plus a distilled image head) lets a detector
trained on base categories only name novel objects, which ViLD-text does poorly. Measured as
novel top-1 accuracy of the detector's own heads naming the ground-truth boxes of scenes with
uniformly drawn shapes (so that novel objects are many), which isolates recognition from the
(shared) proposal quality. At this short schedule novel AP is too noisy to separate the two
(every label of every box is ranked); the AP comparison is the README's reproduction table
(AP_r 12.0 -> 17.9 after 1,200 steps on 4,000 images).

To fit the suite's budget the scenes are 64 px and the backbone narrow ([16, 32, 64, 64]): the
same two runs at 128 px with the default backbone cost twice as much and measured 0.00 vs 0.17.
Smaller RoI batches or a frozen shared backbone lost the effect (measured). The distillation
proposals come from the bundled base-trained `shapes-vild-text` (ViLD's setting: a base-trained
RPN supplies them), so the two runs do not depend on each other: each is built once, by
whichever test process asks first, and the two processes train them at the same time."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from novel import novel_top1
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


SIZE = 64
CFG = ViLDTrainConfig(
    steps=70,
    batch_size=8,
    checkpoint_every=70,
    distill_proposals=8,
    warmup=20,
    side=SIZE,
    backbone_channels=[16, 32, 64, 64],
)


def _build_world(folder: Path) -> None:
    generate_world(
        folder / "w",
        WorldConfig(
            seed=11,
            captions=1,
            det_train=300,
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
    vild = ViLDConfig(embed_dim=clip.embed_dim, hidden=256, image_weight=image_weight)
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


def _novel_top1(tmp_path_factory, worker_id, folder: Path) -> float:
    root, train, val = _world(tmp_path_factory, worker_id)
    clip = load_model("shapes-clip")
    cats = sorted(val["categories"], key=lambda c: c["id"])
    text = embed_vocabulary(clip, vocabulary_from_categories(cats), "ensemble")
    novel = torch.tensor([c["id"] not in train["ovd"]["base"] for c in cats])
    return novel_top1(folder, val, root / "val", text, novel)


@pytest.mark.slow(seconds=45)
def test_vild_text_names_no_novel_shape(tmp_path_factory, worker_id):
    text_only = _trained(tmp_path_factory, worker_id, 0.0)
    # measured 0.02 at 70 steps (0.00 at 100, 0.04 at 200): trained with base names only, its
    # background takes nearly every novel shape
    assert _novel_top1(tmp_path_factory, worker_id, text_only) < 0.10


@pytest.mark.slow(seconds=60)
def test_distillation_names_novel_shapes_better_than_vild_text(tmp_path_factory, worker_id):
    distilled = _trained(tmp_path_factory, worker_id, 1.0)
    text_only = _trained(tmp_path_factory, worker_id, 0.0)
    acc_vild = _novel_top1(tmp_path_factory, worker_id, distilled)
    acc_text = _novel_top1(tmp_path_factory, worker_id, text_only)
    # measured here at 70 steps: 0.02 (ViLD-text almost never names a novel shape) vs 0.20 (0.00
    # vs 0.20 at 100 and 150 steps; 0.04 vs 0.18 at 200)
    assert acc_vild >= 0.10 and acc_vild > acc_text + 0.08, (acc_text, acc_vild)
