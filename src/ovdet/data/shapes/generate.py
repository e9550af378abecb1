"""Write a shapes-world benchmark to disk: the caption split, det-train, det-val and det-style,
and the detection-sized caption scenes and uniform val set that RKD and CoDet use.

Layout of `out/`:
  captions/images/*.png, captions/captions.json   image-caption pairs, every category (CLIP's data)
  det-train/images/*.png, det-train/annotations.json   COCO + LVIS fields; novel annotations removed
  det-val/images/*.png, det-val/annotations.json       everything annotated
  det-style/images/*.png, det-style/annotations.json   as det-val, drawn in the held-out style
  det-captions/images/*.png, det-captions/captions.json   128 px scenes of 2-4 uniformly drawn
      shapes (novel ones included) with a caption each, in COCO captions format: no boxes
  det-captions/oracle.json        their true boxes (COCO), for diagnostics only, never training
  det-captions-companion/...      as det-captions, but each novel shape brings its fixed base
      partner (`world.COMPANIONS`, e.g. crescent with star) with probability `companion`: the
      distracting co-occurrence CoDet's text guidance is meant to filter
  det-val-uniform/images/*.png, det-val-uniform/annotations.json   as det-val with uniformly
      drawn categories, so each novel shape has about 150 objects (det-val: about 10)
  categories.json                                      names, synonyms, frequency, base/novel

Captions are drawn in the classic cluttered style (what the bundled shapes-clip learned from) or,
with `caption_style="train"`, in `style.TRAIN` (shape families, fills, backgrounds, sizes from
tiny to frame-filling, blur and JPEG; `caption_counts` sets how many show 1, 2 or 3 objects);
det-train and det-val in the classic style; det-style in
`style.HELDOUT`, which no model is trained on (the out-of-distribution column of every table).

Image i of a split is drawn from `np.random.default_rng([seed, split, i])`, so any image can be
regenerated alone and the output does not depend on the order of work. Files are written
atomically.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovdet.data.shapes.captions import caption
from ovdet.data.shapes.style import HELDOUT, TRAIN, render_styled
from ovdet.data.shapes.world import CATEGORIES, COMPANIONS, Scene, render_scene
from ovdet.io.atomic import atomic_folder, atomic_path, check_replaceable, write_json
from ovdet.ops.masks import rle_encode

DEFAULT_COUNT_SHARES = (0.6, 0.25, 0.15)  # train-style caption images with 1, 2, 3 objects
CAPTION_RADIUS = (0.08, 0.5)  # of the side: tiny to frame-filling
STYLE_RADIUS = (0.07, 0.26)  # det-style's objects, about det-val's sizes (0.09-0.22) and beyond
SPLIT_CODES = {
    "captions": 0,
    "det-train": 1,
    "det-val": 2,
    "det-style": 3,
    "det-captions": 4,
    "det-val-uniform": 5,
    "det-captions-companion": 6,
}
DETECTION_SPLITS = ("det-train", "det-val", "det-style", "det-val-uniform")


@dataclass
class WorldConfig:
    """What to generate. Sizes in pixels."""

    seed: int = 0
    captions: int = 20_000  # image-caption pairs
    det_train: int = 4_000  # detection training images (novel annotations removed)
    det_val: int = 500  # detection validation images (everything annotated)
    det_style: int = 500  # as det-val, in the held-out style
    det_captions: int = 2_000  # detection-sized caption scenes (no boxes; RKD's, CoDet's)
    det_val_uniform: int = 1_000  # as det-val with uniformly drawn categories
    det_captions_companion: int = 2_000  # caption scenes where novel shapes bring a partner
    companion: float = 0.5  # probability that a novel shape's partner joins its scene
    size: int = 128  # side of detection images
    caption_size: int = 64  # side of caption images
    max_objects: int = 4  # per detection image
    caption_style: str = "classic"  # "classic" (the bundled shapes-clip's data) or "train"
    # train style: shares of images with 1, 2, 3 objects ("0.6,0.25,0.15")
    caption_counts: str = ",".join(map(str, DEFAULT_COUNT_SHARES))

    def __post_init__(self) -> None:
        from ovdet.config import check_fields
        from ovdet.errors import ConfigError

        check_fields(
            self,
            positive=("max_objects",),
            nonnegative=(
                "seed",
                "captions",
                "det_train",
                "det_val",
                "det_style",
                "det_captions",
                "det_val_uniform",
                "det_captions_companion",
            ),
            unit=("companion",),
            choices={"caption_style": ["classic", "train"]},
        )
        for name in ("size", "caption_size"):
            if getattr(self, name) < 32:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be >= 32 px, got {getattr(self, name)}"
                )
        shares = self.caption_count_shares  # parsed (and refused) here, not mid-generation
        if self.caption_style == "classic" and shares != DEFAULT_COUNT_SHARES:
            raise ConfigError(
                f"caption-counts {self.caption_counts!r} applies to caption-style 'train'; the "
                "classic captions keep the bundled shapes-clip's draw"
            )

    @property
    def caption_count_shares(self) -> tuple[float, float, float]:
        """`caption_counts` as three shares (images with 1, 2 and 3 objects) summing to 1."""
        from ovdet.errors import ConfigError

        bad = ConfigError(
            "caption-counts must be three shares >= 0 for 1, 2 and 3 objects that sum to 1, "
            f"e.g. '0.6,0.25,0.15'; got {self.caption_counts!r}"
        )
        try:
            shares = tuple(float(x) for x in self.caption_counts.split(","))
        except ValueError:
            raise bad from None
        if len(shares) != 3 or not all(math.isfinite(x) and x >= 0 for x in shares):
            raise bad
        if abs(sum(shares) - 1) > 1e-6:
            raise bad
        return shares  # type: ignore[return-value]


def category_records(image_counts: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """COCO/LVIS `categories`: id (1-based), name, synonyms, frequency, image_count."""
    return [
        {
            "id": i + 1,
            "name": name,
            "synonyms": [name, *syn],
            "frequency": freq,
            "image_count": (image_counts or {}).get(i + 1, 0),
        }
        for i, (name, freq, syn) in enumerate(CATEGORIES)
    ]


def split_ids() -> tuple[list[int], list[int]]:
    """(base ids, novel ids): base = frequent + common, novel = rare."""
    base = [i + 1 for i, (_, f, _) in enumerate(CATEGORIES) if f != "r"]
    novel = [i + 1 for i, (_, f, _) in enumerate(CATEGORIES) if f == "r"]
    return base, novel


def scene_for(seed: int, split: str, index: int, cfg: WorldConfig) -> Scene:
    """The deterministic scene `index` of `split`."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    if split == "captions" and cfg.caption_style == "classic":
        s = cfg.caption_size
        return render_scene(
            rng,
            (s, s),
            max_objects=1 if rng.random() < 0.75 else 2,
            uniform=True,
            radius_range=(0.2 * s, 0.36 * s),
        )
    if split == "captions":
        s = cfg.caption_size
        count = int(rng.choice([1, 2, 3], p=cfg.caption_count_shares))
        radius = CAPTION_RADIUS if count == 1 else (CAPTION_RADIUS[0], 0.32)
        return render_styled(rng, (s, s), TRAIN, count, radius_range=radius)
    if split == "det-captions-companion":
        return render_scene(rng, (cfg.size, cfg.size), categories=companion_draw(rng, cfg))
    if split in ("det-captions", "det-val-uniform"):
        lo = 2 if split == "det-captions" else 1
        return render_scene(
            rng, (cfg.size, cfg.size), max(lo, cfg.max_objects), uniform=True, min_objects=lo
        )
    if split == "det-style":
        count = int(rng.integers(1, cfg.max_objects + 1))
        return render_styled(rng, (cfg.size, cfg.size), HELDOUT, count, False, STYLE_RADIUS)
    return render_scene(rng, (cfg.size, cfg.size), max_objects=cfg.max_objects)


def companion_draw(rng: np.random.Generator, cfg: WorldConfig) -> list[int]:
    """2..max_objects uniformly drawn categories (0-based), each novel one followed by its base
    partner with probability `cfg.companion` (when the partner is not drawn already)."""
    names = [name for name, _, _ in CATEGORIES]
    count = int(rng.integers(2, max(2, cfg.max_objects) + 1))
    drawn = [int(c) for c in rng.choice(len(CATEGORIES), count)]
    out = []
    for c in drawn:
        out.append(c)
        partner = COMPANIONS.get(names[c])
        if partner and names.index(partner) not in drawn and rng.random() < cfg.companion:
            out.append(names.index(partner))
    return out


def _save_png(image: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def annotations_of(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """COCO annotations of a scene's objects (visible masks, their boxes and areas)."""
    anns = []
    for k, (obj, mask) in enumerate(zip(scene.objects, scene.masks, strict=True)):
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        anns.append(
            {
                "id": first_id + k,
                "image_id": image_id,
                "category_id": obj.category + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": int(mask.sum()),
                "iscrowd": 0,
                "segmentation": rle_encode(mask),
                "attributes": {"colour": obj.colour},
            }
        )
    return anns


def generate_detection_split(out: Path, split: str, count: int, cfg: WorldConfig) -> dict[str, Any]:
    """Render a detection split and return its COCO dataset (written by the caller)."""
    images, anns = [], []
    for i in tqdm(range(count), desc=split, unit="img"):
        scene = scene_for(cfg.seed, split, i, cfg)
        name = f"images/{i:06d}.png"
        _save_png(scene.image, out / split / name)
        new = annotations_of(scene, i + 1, len(anns) + 1)
        present = {a["category_id"] for a in new}
        images.append(
            {
                "id": i + 1,
                "file_name": name,
                "height": cfg.size,
                "width": cfg.size,
                # every object is annotated: all absent categories are verified negatives
                "neg_category_ids": [c for c in range(1, len(CATEGORIES) + 1) if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        anns += new
    return {"images": images, "annotations": anns}


def generate_captions(out: Path, count: int, cfg: WorldConfig) -> list[dict[str, Any]]:
    records = []
    for i in tqdm(range(count), desc="captions", unit="img"):
        scene = scene_for(cfg.seed, "captions", i, cfg)
        name = f"images/{i:06d}.png"
        _save_png(scene.image, out / "captions" / name)
        rng = np.random.default_rng([cfg.seed, 10 + SPLIT_CODES["captions"], i])
        text, mentions = caption(scene.objects, rng)
        records.append(
            {
                "image_id": i + 1,
                "file_name": name,
                "caption": text,
                "mentions": mentions,
                "objects": [{"category": o.name, "colour": o.colour} for o in scene.objects],
            }
        )
    return records


def generate_caption_scenes(
    out: Path, count: int, cfg: WorldConfig, split: str = "det-captions"
) -> tuple[dict, dict]:
    """A caption-scene split: (COCO captions file, oracle COCO detection file)."""
    images, captions, oracle = [], [], []
    for i in tqdm(range(count), desc=split, unit="img"):
        scene = scene_for(cfg.seed, split, i, cfg)
        name = f"images/{i:06d}.png"
        _save_png(scene.image, out / split / name)
        rng = np.random.default_rng([cfg.seed, 10 + SPLIT_CODES[split], i])
        text, mentions = caption(scene.objects, rng)
        images.append({"id": i + 1, "file_name": name, "height": cfg.size, "width": cfg.size})
        captions.append({"id": i + 1, "image_id": i + 1, "caption": text, "mentions": mentions})
        oracle += annotations_of(scene, i + 1, len(oracle) + 1)
    return {"images": images, "annotations": captions}, {"images": images, "annotations": oracle}


def generate_world(out: str | os.PathLike, cfg: WorldConfig) -> Path:
    """Generate every split of the shapes world into `out`; returns `out`.

    The world is written into a temporary folder beside `out` and renamed into place when
    complete, so a killed run leaves the previous world (or none), never images of one seed with
    annotations of another. `out` must be new, empty or an earlier shapes world.
    """
    out = Path(out)
    check_replaceable(out, "categories.json", "shapes world")
    with atomic_folder(out) as tmp:
        _write_world(tmp, cfg)
    return out


def _write_world(out: Path, cfg: WorldConfig) -> None:
    base, novel = split_ids()
    write_json(out / "captions" / "captions.json", generate_captions(out, cfg.captions, cfg))
    train = generate_detection_split(out, "det-train", cfg.det_train, cfg)
    counts: dict[int, set[int]] = {}
    for a in train["annotations"]:
        counts.setdefault(a["category_id"], set()).add(a["image_id"])
    categories = category_records({c: len(ids) for c, ids in counts.items()})
    ovd = {"base": base, "novel": novel}
    # the open-vocabulary protocol: novel objects stay in the images, their labels are removed
    train["annotations"] = [a for a in train["annotations"] if a["category_id"] in base]
    write_json(
        out / "det-train" / "annotations.json", {**train, "categories": categories, "ovd": ovd}
    )
    for split, count in (
        ("det-val", cfg.det_val),
        ("det-style", cfg.det_style),
        ("det-val-uniform", cfg.det_val_uniform),
    ):
        val = generate_detection_split(out, split, count, cfg)
        write_json(out / split / "annotations.json", {**val, "categories": categories, "ovd": ovd})
    for split, count in (
        ("det-captions", cfg.det_captions),
        ("det-captions-companion", cfg.det_captions_companion),
    ):
        captions, oracle = generate_caption_scenes(out, count, cfg, split)
        write_json(out / split / "captions.json", captions)
        write_json(out / split / "oracle.json", {**oracle, "categories": categories})
    write_json(
        out / "categories.json",
        {"categories": categories, "ovd": ovd, "config": vars(cfg)},
        indent=1,
    )
