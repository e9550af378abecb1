"""`ovdet demo`: the shapes world end to end with the bundled models, in seconds, offline.

Draws a fresh scene that holds a novel shape, names its objects with the bundled shapes-clip
(CLIP on crops and the dense one-pass recognizer), expands the vocabulary with colour attributes
(P(shape, colour | r) = P(shape | r) P(colour | r)) and with the bundled RegionSpot (shapes-sam
tokens and masks fused with shapes-clip's feature map), segments and names each object from one
click inside it with the bundled Open-Vocabulary SAM (one shapes-clip pass feeds SAM's decoder and
the recognition head), then detects the same scene with no boxes given using the bundled
shapes-vild (trained on base shapes only); prints tables and writes annotated PNGs and COCO JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from rich.console import Console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="recognise novel shapes and colours in a fresh scene (bundled models)"
    )
    p.add_argument(
        "--seed", type=int, default=2026, help="scene seed (a scene with a novel shape is picked)"
    )
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument("--out", default="out/demo")
    p.set_defaults(run=run)


def novel_scene(seed: int):
    """The first scene from `seed` on that holds a novel (rare) shape among 3-5 objects."""
    import numpy as np

    from ovdet.data.shapes.world import CATEGORIES, render_scene

    for k in range(1000):
        scene = render_scene(
            np.random.default_rng([seed, k]), (128, 128), max_objects=5, min_objects=3
        )
        if any(CATEGORIES[o.category][1] == "r" for o in scene.objects):
            return scene
    raise RuntimeError("no scene with a novel shape found")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image
    from rich.console import Console

    from ovdet.eval.shapes_clip import SHAPES_VOCAB
    from ovdet.io.atomic import atomic_path, write_json
    from ovdet.io.coco import regions_to_coco
    from ovdet.methods.ovsam.clip2sam import OVSam
    from ovdet.methods.regionspot.recognizer import RegionSpotRecognizer
    from ovdet.models.loader import load_model
    from ovdet.ops.masks import interior_points, masks_to_boxes
    from ovdet.recognize.core import recognize, relabel_with_attributes
    from ovdet.recognize.crop import CropEmbedder
    from ovdet.recognize.dense import DenseEmbedder
    from ovdet.types import Regions
    from ovdet.viz import draw_regions, save_png
    from ovdet.vocab.embed import TextEmbedder

    console = Console()
    scene = novel_scene(args.seed)
    image = torch.from_numpy(scene.image).permute(2, 0, 1)
    xyxy = masks_to_boxes(np.stack(scene.masks))
    model = load_model(args.clip)
    embedder = TextEmbedder(model, "ensemble")
    text, colours = embedder.embed(SHAPES_VOCAB), embedder.embed_attributes(SHAPES_VOCAB)
    shapes = Regions(
        xyxy, tuple(scene.image.shape[:2]), masks=torch.from_numpy(np.stack(scene.masks))
    )
    results = {}
    for name, rec in (("crop", CropEmbedder(model)), ("dense", DenseEmbedder(model))):
        regions = recognize(image, shapes, text, rec, model.logit_scale)
        results[name] = relabel_with_attributes(regions, colours, SHAPES_VOCAB, model.logit_scale)
    spot = RegionSpotRecognizer("shapes-regionspot", clip=model)
    spotted = spot.recognize(image, xyxy, spot.text_embeddings(SHAPES_VOCAB))
    results["regionspot"] = (spotted, list(SHAPES_VOCAB.names))
    clicks = interior_points(shapes.masks)  # (N, 2): one click inside each object
    clicked = OVSam("shapes-ovsam").segment_points(image, clicks, SHAPES_VOCAB)
    results["ovsam"] = (clicked, list(SHAPES_VOCAB.names))
    _print(console, scene, results)
    out = Path(args.out)
    with atomic_path(out / "scene.png") as tmp:
        Image.fromarray(scene.image).save(tmp, format="PNG")
    regions, names = results["crop"]
    save_png(draw_regions(image, regions, names, show_masks=False), out / "recognized.png")
    entries = regions_to_coco(regions, image_id=1)
    for e, obj in zip(entries, scene.objects, strict=True):
        e["category_name"] = names[e["category_id"] - 1]
        e["truth"] = f"{obj.colour} {obj.name}"
    write_json(out / "recognized.json", entries, indent=1)
    save_png(draw_regions(image, spotted, list(SHAPES_VOCAB.names)), out / "regionspot.png")
    save_png(draw_regions(image, clicked, list(SHAPES_VOCAB.names)), out / "ovsam.png")
    _detect(console, scene, image, text, out)
    console.print(
        f"wrote scene.png, recognized.png/.json, regionspot.png (SAM masks), ovsam.png (masks "
        f"from clicks) and "
        f"detected.png/.json to {out}"
    )
    console.print(
        "the same on a photo with real CLIP: ovdet recognize photo.jpg --boxes boxes.json "
        '--vocab "cat, traffic cone" --attributes "red, blue" --clip clip-b16'
    )
    return 0


def _detect(console: Console, scene, image: torch.Tensor, text: torch.Tensor, out: Path) -> None:
    """Open-vocabulary detection of the same scene with the bundled ViLD (no boxes given)."""
    import numpy as np
    import torch
    from rich.table import Table

    from ovdet.data.shapes.world import CATEGORIES
    from ovdet.eval.shapes_clip import SHAPES_VOCAB
    from ovdet.io.atomic import write_json
    from ovdet.io.coco import regions_to_coco
    from ovdet.methods.vild.detector import detect_image, load_detector
    from ovdet.ops.boxes import box_iou
    from ovdet.ops.masks import masks_to_boxes
    from ovdet.viz import draw_regions, save_png

    model, spec = load_detector("shapes-vild")
    novel = torch.tensor([f == "r" for _, f, _ in CATEGORIES])
    regions = detect_image(model, spec, image, text, novel)
    shown = regions[regions.scores >= 0.3]
    truth = masks_to_boxes(np.stack(scene.masks))
    iou = box_iou(shown.xyxy, truth) if len(shown) else torch.zeros(0, len(truth))
    table = Table(title=f"shapes-vild detects the scene, no boxes given ({len(shown)} >= 0.30)")
    for col in ("detected", "score", "novel?", "best-matching truth (IoU)"):
        table.add_column(col, no_wrap=True)
    for i in range(len(shown)):
        label = int(shown.labels[i])
        j = int(iou[i].argmax())
        obj = scene.objects[j]
        table.add_row(
            SHAPES_VOCAB.names[label],
            f"{float(shown.scores[i]):.2f}",
            "novel" if novel[label] else "",
            f"{obj.colour} {obj.name} ({float(iou[i, j]):.2f})",
        )
    console.print(table)
    save_png(draw_regions(image, shown, list(SHAPES_VOCAB.names)), out / "detected.png")
    entries = regions_to_coco(regions, image_id=1)
    for e in entries:
        e["category_name"] = SHAPES_VOCAB.names[e["category_id"] - 1]
    write_json(out / "detected.json", entries, indent=1)


def _print(console: Console, scene, results: dict) -> None:
    from rich.table import Table

    from ovdet.data.shapes.world import CATEGORIES

    table = Table(
        title="a fresh scene's objects named from their boxes (shapes-clip crops and dense map, "
        "RegionSpot) and from one click inside each (Open-Vocabulary SAM); novel shapes were "
        "never annotated in training"
    )
    columns = ("crop (p)", "dense (p)", "RegionSpot (sigmoid)", "OV-SAM click (p)")
    table.add_column("#", no_wrap=True)
    for col in ("truth", "novel?", *columns):
        table.add_column(col)
    for i, obj in enumerate(scene.objects):
        truth = f"{obj.colour} {obj.name}"
        row = [str(i), truth, "novel" if CATEGORIES[obj.category][1] == "r" else ""]
        for regions, names in results.values():
            predicted = names[int(regions.labels[i])]
            right = predicted == truth or predicted == obj.name  # RegionSpot, OV-SAM: shapes
            colour = "green" if right else "red"
            row.append(f"[{colour}]{predicted}[/{colour}] {float(regions.scores[i]):.2f}")
        table.add_row(*row)
    console.print(table)
