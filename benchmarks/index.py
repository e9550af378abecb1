"""Region search: indexing speed and word-query precision on the shapes world, and query latency,
recall and size of the vector index at 10k and 1M regions (synthetic clustered embeddings).

  1. Generates a shapes world's det-val split (`--images` scenes), indexes it with shapes-clip
     dense regions over SAM's everything mode (shapes-sam, 8 x 8 points, thresholds 0.7 / 0.9:
     the RKD stand-in's setting) and over shapes-vild's detections, and with shapes-regionspot's
     embeddings over shapes-vild's detections; prints images/s and, per shape queried by its
     name, precision@20 (a hit is a region with IoU >= 0.5 to an object of that shape).
  2. For 10k and `--big` synthetic unit vectors (`--dim`, clustered like region embeddings): build
     time, query latency p50/p95 (one query at a time), recall@10 against exact search, bytes per
     region of the index in memory and of the float16 copy on disk.

    python benchmarks/index.py [--images 500] [--big 1000000] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

QUERIES = ("trapezoid", "crescent", "ring", "circle", "star", "triangle", "hexagon", "square")


def precision_at(index, gt: dict, clip, name: str, k: int = 20) -> float:
    from ovdet.ops.boxes import box_iou, xywh_to_xyxy
    from ovdet.vocab.embed import TextEmbedder
    from ovdet.vocab.parse import parse_vocabulary

    cat = next(c["id"] for c in gt["categories"] if c["name"] == name)
    by_file = {Path(im["file_name"]).name: im["id"] for im in gt["images"]}
    templates = index.meta.get("templates") or "ensemble"  # a RegionSpot index: its prompts
    query = TextEmbedder(clip, templates, None).embed(parse_vocabulary(name))
    hits = index.search(query, k)[0]
    good = 0
    for h in hits:
        image_id = by_file[Path(h.image).name]
        boxes = [
            a["bbox"]
            for a in gt["annotations"]
            if a["image_id"] == image_id and a["category_id"] == cat
        ]
        if boxes:
            iou = box_iou(torch.tensor([h.box]), xywh_to_xyxy(torch.tensor(boxes).float()))
            good += bool(iou.max() >= 0.5)
    return good / k


def shapes_world(root: Path, count: int) -> None:
    from ovdet.data.image_list import find_images
    from ovdet.data.shapes.generate import WorldConfig, generate_world
    from ovdet.index import RegionIndex
    from ovdet.index.regions import ProposalConfig, RegionSource
    from ovdet.models.loader import load_model

    zeros = dict(det_train=0, det_style=0, det_captions=0, det_val_uniform=0)
    world = generate_world(
        root / "w", WorldConfig(captions=1, det_val=count, det_captions_companion=0, **zeros)
    )
    gt = json.loads((world / "det-val" / "annotations.json").read_text())
    images = find_images(world / "det-val" / "images")
    from ovdet.api import load

    clip = load_model("shapes-clip")
    spot = load("shapes-regionspot")
    torch.set_num_threads(1)
    sam_grid = ProposalConfig("sam", "shapes-sam", 8, 0.7, 0.9)
    for label, config, embedder in (
        ("SAM (shapes-sam, 8x8, 0.7/0.9) + dense CLIP", sam_grid, None),
        ("ViLD detections (shapes-vild) + dense CLIP", ProposalConfig("shapes-vild"), None),
        ("ViLD detections + RegionSpot (shapes-regionspot)", ProposalConfig("shapes-vild"), spot),
    ):
        index = RegionIndex(root / label.replace(" ", "_"))
        source = RegionSource(clip, config, regionspot=embedder)
        extra = {"templates": spot.spec["templates"]} if embedder is not None else {}
        start = time.perf_counter()
        counts = index.build(
            images, source, "shapes-clip", clip, signature={**source.signature(), **extra}
        )
        seconds = time.perf_counter() - start
        print(
            f"{label}: {counts['images'] / seconds:.1f} images/s (one thread), "
            f"{counts['regions'] / counts['images']:.1f} regions per image"
        )
        print("  precision@20: " + ", ".join(
            f"{q} {precision_at(index, gt, clip, q):.2f}" for q in QUERIES
        ))  # fmt: skip


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(10, n // 500), dim)).astype(np.float32)
    out = centers[rng.integers(0, len(centers), n)]
    out += 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    return out


def vector_index(n: int, dim: int) -> None:
    from ovdet.index.vectors import VectorIndex

    x = vectors(n, dim, 0)
    q = x[np.random.default_rng(1).integers(0, n, 200)] + 0.3 * vectors(200, dim, 2)
    exact = VectorIndex(dim, exact_limit=n)
    exact.add(x)
    truth = exact.search(q, 10)[1]
    kinds = [("exact", exact)]
    if n > 100_000:
        start = time.perf_counter()
        ivf = VectorIndex(dim, exact_limit=n - 1)
        ivf.add(x)
        print(f"  IVF-PQ build (train + add) {time.perf_counter() - start:.0f} s")
        kinds.append(("IVF-PQ", ivf))
    for name, index in kinds:
        lat = []
        for row in q:
            start = time.perf_counter()
            _, rows = index.search(row[None], 10)
            lat.append(time.perf_counter() - start)
        found = index.search(q, 10)[1]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
        size = index.bytes_per_vector()
        print(
            f"  {n:>9,} regions, {name:6}: p50 {1e3 * np.percentile(lat, 50):.2f} ms, "
            f"p95 {1e3 * np.percentile(lat, 95):.2f} ms, recall@10 {recall:.3f}, "
            f"{size['index']:.0f} B/region in the index + {size['float16 copy']:.0f} on disk"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shapes-only", action="store_true", help="skip the synthetic vectors")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shapes_world(Path(tmp), args.images)
    if args.shapes_only:
        return
    for n in (10_000, args.big):
        vector_index(n, args.dim)


if __name__ == "__main__":
    main()
