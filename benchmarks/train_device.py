"""Training on an accelerator against the same training on the CPU: ViLD-text and RegionSpot
(the two heads users train on their own data) and the RKD and CoDet fine-tunings of the bundled
ViLD-text, by their CLI commands with `--device`.

On a generated shapes world (det-train and det-captions for training, det-val for evaluation;
RKD's proposals are the training boxes, given as a class-agnostic proposals file) it trains each
once with `--device cpu` and once with `--device DEVICE` (RegionSpot's feature cache built on
each device too), then scores each run on det-val (LVIS protocol) and prints seconds and AP per
device. The runs are not bit-identical (other kernels, float sums in another order): the APs
should agree within a few points, and the accelerator should be faster.

    python benchmarks/train_device.py [--device cuda] [--steps 300] [--images 400] [--out DIR]
        [--parts vild,regionspot,rkd,codet]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ovdet.cli.main import main
from ovdet.data.shapes.generate import WorldConfig, generate_world


def timed(args: list[str]) -> float:
    """Seconds `ovdet args` took; raises if it failed."""
    start = time.perf_counter()
    code = main(args)
    if code != 0:
        raise SystemExit(f"ovdet {' '.join(args)}: exit {code}")
    return time.perf_counter() - start


def ap(metrics: Path) -> tuple[float, float]:
    """(AP, AP_r) from a metrics.json."""
    m = json.loads(metrics.read_text())["metrics"]
    return m["AP"], m["APr"]


PARTS = ("vild", "regionspot", "rkd", "codet")
LVIS = ["--protocol", "lvis", "--split", "lvis"]


def run(device: str, world: Path, out: Path, steps: int, parts=PARTS) -> dict[str, float]:
    """Each of `parts` trained and scored on `device`: {"<part> s": seconds, "<part> AP": ...}."""
    train, val = world / "det-train", world / "det-val"
    tr, va = str(train / "annotations.json"), str(val / "annotations.json")
    dev = ["--device", device]
    row: dict[str, float] = {}
    if "vild" in parts:
        vild(row, train, val, out, steps, dev)
    if "regionspot" in parts:
        regionspot(row, train, val, out, steps, dev)
    captions = ["--captions", str(world / "det-captions" / "captions.json")]
    fine_tune = ["--gt", tr, "--images", str(train), *captions, "--init", "shapes-vild-text",
                 "--steps", str(steps), "--checkpoint-every", str(steps), *dev]  # fmt: skip
    methods = {}
    if "rkd" in parts:
        proposals = out / "proposals.json"  # class-agnostic: the training boxes, as a detector's
        gt = json.loads(Path(tr).read_text())
        proposals.parent.mkdir(parents=True, exist_ok=True)
        proposals.write_text(json.dumps([{"image_id": a["image_id"], "bbox": a["bbox"],
                                          "score": 1.0} for a in gt["annotations"]]))  # fmt: skip
        methods["rkd"] = ["--pseudo-labeler", str(proposals), "--pseudo-threshold", "0"]
    if "codet" in parts:
        methods["codet"] = []
    for method, extra in methods.items():
        row[f"{method} s"] = timed(["train", method, *fine_tune, "--out", str(out / method),
                                    *extra])  # fmt: skip
        timed(["detect", "--images", str(val), "--gt", va, "--vocab", va, "--model",
               str(out / method), "--out", str(out / f"{method}-det" / "results.json"),
               "--eval", *LVIS, *dev])  # fmt: skip
        row[f"{method} AP"], row[f"{method} AP_r"] = ap(out / f"{method}-det" / "metrics.json")
    return row


def vild(row: dict, train: Path, val: Path, out: Path, steps: int, dev: list[str]) -> None:
    """ViLD-text from scratch, scored by `detect --eval` on det-val."""
    tr, va = str(train / "annotations.json"), str(val / "annotations.json")
    row["vild s"] = timed(["train", "vild", "--gt", tr, "--images", str(train), "--clip",
                            "shapes-clip", "--out", str(out / "vild"), "--steps", str(steps),
                            "--checkpoint-every", str(steps), *dev])  # fmt: skip
    timed(["detect", "--images", str(val), "--gt", va, "--vocab", va, "--model",
           str(out / "vild"), "--out", str(out / "vild-det" / "results.json"), "--eval",
           *LVIS, *dev])  # fmt: skip
    row["vild AP"], row["vild AP_r"] = ap(out / "vild-det" / "metrics.json")


def regionspot(row: dict, train: Path, val: Path, out: Path, steps: int, dev: list[str]) -> None:
    """`ovdet cache` and RegionSpot, scored by `eval-regions` on det-val's GT boxes."""
    tr, va = str(train / "annotations.json"), str(val / "annotations.json")
    cache = ["--sam", "shapes-sam", "--clip", "shapes-clip", *dev]
    row["cache s"] = timed(["cache", "--gt", tr, "--images", str(train), "--out",
                            str(out / "cache"), *cache])  # fmt: skip
    row["regionspot s"] = timed(["train", "regionspot", "--cache", str(out / "cache"), "--gt", tr,
                                 "--out", str(out / "regionspot"), "--steps", str(steps),
                                 "--checkpoint-every", str(steps), *dev])  # fmt: skip
    timed(["eval-regions", "--gt", va, "--images", str(val), *LVIS, "--model",
           str(out / "regionspot"), "--out", str(out / "rs-eval"), *dev])  # fmt: skip
    row["regionspot AP"], row["regionspot AP_r"] = ap(out / "rs-eval" / "metrics.json")


def main_(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", type=Path, default=Path("runs/train-device"))
    p.add_argument("--images", type=int, default=400, help="det-train and det-captions images")
    p.add_argument("--parts", default=",".join(PARTS), help="what to train, of " + ", ".join(PARTS))
    args = p.parse_args(argv)
    n = args.images
    cfg = WorldConfig(seed=6, captions=1, det_train=n, det_val=max(1, n // 4), det_style=0,
                      det_captions=n, det_val_uniform=0, det_captions_companion=0)  # fmt: skip
    world = generate_world(args.out / "world", cfg)
    parts = tuple(x.strip() for x in args.parts.split(","))
    if not set(parts) <= set(PARTS):
        p.error(f"--parts must be among {PARTS}, got {args.parts!r}")
    rows = {f"{k}-{d}": run(d, world, args.out / f"{k}-{d}", args.steps, parts)
            for k, d in (("a", "cpu"), ("b", args.device))}  # fmt: skip
    print(f"{'':<16}" + "".join(f"{d:>10}" for d in rows))
    for key in rows["a-cpu"]:
        print(f"{key:<16}" + "".join(f"{r[key]:10.2f}" for r in rows.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
