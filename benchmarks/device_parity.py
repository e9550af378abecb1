"""Every `--device` path of the CLI on an accelerator against the same command on the CPU.

Runs classify, recognize (crop, dense, RegionSpot, Open-Vocabulary SAM from points), detect
(ViLD, RegionSpot), eval-regions and index build with the bundled shapes-world models once with
`--device cpu` and once with `--device DEVICE`, and what `ovdet serve`'s models answer (detect,
recognize, segment from points and boxes, requery, classify) on each, and compares: the same
labels, scores (and every other number) within `--tol`, boxes within `--box-tol` pixels. Prints
one row per command (seconds on each device, model loading included; the largest differences)
and exits 1 if any differs. CUDA's TF32 convolutions move scores by about 1e-3 at most.

    python benchmarks/device_parity.py [--device cuda] [--tol 1e-3] [--out runs/device-parity]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ovdet.cli.demo import novel_scene
from ovdet.cli.main import main
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.ops.masks import interior_points, masks_to_boxes

VOCAB = "circle, square, star, crescent, trapezoid, ring, heart, cross"


def commands(world: Path, scene: Path, boxes: str, points: str) -> dict[str, list[str]]:
    """name -> CLI arguments, without --device and the output path (added per device)."""
    val = world / "det-val"
    shapes = ["--clip", "shapes-clip", "--vocab", VOCAB]
    recognize = ["recognize", str(scene), "--boxes", boxes, *shapes]
    return {
        "classify": ["classify", str(scene), *shapes, "--json"],
        "recognize crop": [*recognize, "--method", "crop", "--out"],
        "recognize dense": [*recognize, "--method", "dense", "--out"],
        "recognize regionspot": [*recognize, "--model", "shapes-regionspot", "--out"],
        "recognize ovsam points": [
            "recognize",
            str(scene),
            "--points",
            points,
            *shapes,
            "--model",
            "shapes-ovsam",
            "--out",
        ],  # fmt: skip
        "detect vild": ["detect", str(scene), "--model", "shapes-vild", "--vocab", VOCAB, "--out"],
        "detect regionspot": [
            "detect",
            str(scene),
            "--model",
            "shapes-regionspot",
            "--vocab",
            VOCAB,
            "--out",
        ],  # fmt: skip
        "eval-regions regionspot": [
            "eval-regions",
            "--gt",
            str(val / "annotations.json"),
            "--images",
            str(val),
            "--protocol",
            "lvis",
            "--split",
            "lvis",
            "--model",
            "shapes-regionspot",
            "--out",
        ],  # fmt: skip
        "index build": [
            "index",
            "build",
            "--images",
            str(val / "images"),
            "--clip",
            "shapes-clip",
            "--proposals",
            "shapes-vild",
            "--out",
        ],  # fmt: skip
    }


def numbers(path: Path) -> dict[str, list[float]]:
    """Every number in the JSON files under `path` (a file or folder), by key path; strings and
    lists of strings (labels, file names) are kept as hashes so that a changed label shows."""
    found: dict[str, list[float]] = {}

    def walk(x, key: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                skip = k in ("seconds", "time", "elapsed", "counts", "size")  # timings, RLE
                if not skip:  # mask pixels are not compared: their boxes and scores are
                    walk(v, f"{key}.{k}")
        elif isinstance(x, list):
            for v in x:
                walk(v, key)
        elif isinstance(x, bool | int | float):
            found.setdefault(key, []).append(float(x))
        elif isinstance(x, str):
            found.setdefault(key + "#", []).append(float(hash(x) % 1000003))

    files = [path] if path.is_file() else sorted(path.rglob("*.json"))
    for f in files:
        walk(json.loads(f.read_text()), f.name)
    return found


def compare(a: Path, b: Path) -> tuple[float, float, bool]:
    """(largest score difference, largest box difference in pixels, whether labels and counts
    agree) between two outputs."""
    x, y = numbers(a), numbers(b)
    if x.keys() != y.keys():
        return float("inf"), float("inf"), False
    score, box, same = 0.0, 0.0, True
    for k in x:
        if len(x[k]) != len(y[k]):
            return float("inf"), float("inf"), False
        diff = float(np.max(np.abs(np.subtract(x[k], y[k])), initial=0.0))
        if k.endswith("#") or "category_id" in k or "label" in k:
            same &= x[k] == y[k]
        elif any(b in k.rsplit(".", 1)[-1] for b in ("bbox", "box", "xyxy")):
            box = max(box, diff)
        else:
            score = max(score, diff)
    return score, box, same


def zoo_outputs(device: str, image: torch.Tensor, xyxy: torch.Tensor, points: torch.Tensor):
    """What `ovdet serve`'s models answer on `device` (no HTTP: the zoo the app calls) -> name
    -> (labels, scores, boxes) on the CPU."""
    from ovdet.serve.zoo import Zoo
    from ovdet.vocab.parse import parse_vocabulary

    vocab = parse_vocabulary(VOCAB)
    zoo = Zoo.load(["shapes-vild", "shapes-regionspot", "shapes-ovsam"], device=device)
    out = {}
    for name in ("shapes-vild", "shapes-regionspot", "shapes-ovsam"):
        m = zoo.models[name]
        calls = {"recognize": lambda m=m: zoo.recognize(m, image, xyxy, vocab)}
        calls["segment points"] = lambda m=m: zoo.segment(m, image, vocab, points=points)
        calls["segment boxes"] = lambda m=m: zoo.segment(m, image, vocab, xyxy=xyxy)
        if name != "shapes-ovsam":
            calls["detect"] = lambda m=m: zoo.detect(m, image, vocab)
        for call, run in calls.items():
            r = run()
            out[f"serve {name} {call}"] = (r.labels.cpu(), r.scores.cpu(), r.xyxy.cpu())
            if call == "recognize":  # free text on the kept embeddings, no pass over the image
                kept = r.embeddings.cpu()  # as the server's store keeps them
                q = zoo.requery(m, kept, ["a red star", "a ring"]).cpu()
                out[f"serve {name} requery"] = (q.argmax(1), q.max(1).values, torch.zeros(0))
    out["serve classify"] = (torch.zeros(0), zoo.classify(image, vocab).cpu(), torch.zeros(0))
    return out


def main_(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tol", type=float, default=1e-3, help="largest score difference allowed")
    p.add_argument("--box-tol", type=float, default=0.1, help="largest box difference, pixels")
    p.add_argument("--out", type=Path, default=Path("runs/device-parity"))
    args = p.parse_args(argv)
    cfg = WorldConfig(seed=5, captions=1, det_train=0, det_val=8, det_style=0, det_captions=0,
                      det_val_uniform=0, det_captions_companion=0)  # fmt: skip
    world = generate_world(args.out / "world", cfg)
    scene = novel_scene(2026)  # `make demo`'s scene: 3-5 shapes, one of them novel
    Image.fromarray(scene.image).save(args.out / "scene.png")
    masks = torch.from_numpy(np.stack(scene.masks))
    boxes = "; ".join(",".join(f"{v:.0f}" for v in b) for b in masks_to_boxes(masks).tolist())
    points = "; ".join(f"{x},{y}" for x, y in interior_points(masks).tolist())
    failed = 0
    head = f"{'command':<26} {'cpu s':>7} {args.device + ' s':>8} {'score':>9} {'box px':>8}"
    print(head + "  labels")
    for name, cmd in commands(world, args.out / "scene.png", boxes, points).items():
        if name.startswith("index") and importlib.util.find_spec("faiss") is None:
            print(f"{name}: skipped (the index needs faiss-cpu: pip install 'ovdet[index]')")
            continue
        seconds, outs = [], []
        for run, device in (("a", "cpu"), ("b", args.device)):
            out = args.out / f"{run}-{device}" / name.replace(" ", "-")
            if cmd[-1] == "--json":
                out = out.with_suffix(".json")
            start = time.perf_counter()
            code = main([*cmd, str(out), "--device", device])
            seconds.append(time.perf_counter() - start)
            if code != 0:
                print(f"{name}: exit {code} on {device}")
                failed += 1
                break
            outs.append(out)
        else:
            score, box, same = compare(*outs)
            bad = score > args.tol or box > args.box_tol or not same
            failed += bad
            print(f"{name:<26} {seconds[0]:7.2f} {seconds[1]:8.2f} {score:9.1e} {box:8.1e}  "
                  f"{'same' if same else 'DIFFER'}{'  <-- FAIL' if bad else ''}")  # fmt: skip
    image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
    xyxy, clicks = masks_to_boxes(masks).float(), interior_points(masks)
    ref = zoo_outputs("cpu", image, xyxy, clicks)
    for name, (labels, scores, found) in zoo_outputs(args.device, image, xyxy, clicks).items():
        a_labels, a_scores, a_found = ref[name]
        same = torch.equal(labels, a_labels) and scores.shape == a_scores.shape
        score = float((scores - a_scores).abs().max()) if same and len(scores) else 0.0
        box = float((found - a_found).abs().max()) if same and len(found) else 0.0
        bad = score > args.tol or box > args.box_tol or not same
        failed += bad
        print(f"{name:<40} {score:9.1e} {box:8.1e}  "
              f"{'same' if same else 'DIFFER'}{'  <-- FAIL' if bad else ''}")  # fmt: skip
    print("all outputs agree" if not failed else f"{failed} command(s) differ or failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main_())
