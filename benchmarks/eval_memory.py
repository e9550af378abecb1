"""Memory and time of `ovdet eval` on a results file of one million detections.

Generates an LVIS-like ground truth (1,000 images, 300 categories with r/c/f frequencies,
~8 boxes per image) and 1,000 detections per image, writes both as JSON, then runs the COCO and
the LVIS protocol each in a fresh process and prints its wall time and peak resident memory.

    python benchmarks/eval_memory.py [--images 1000] [--per-image 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(folder: Path, n_images: int, per_image: int, n_cats: int = 300) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    freq = rng.choice(["r", "c", "f"], n_cats, p=[0.3, 0.4, 0.3])
    cats = [{"id": c + 1, "name": f"cat{c}", "frequency": str(freq[c])} for c in range(n_cats)]
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        present = rng.choice(n_cats, 4, replace=False) + 1
        images.append(
            {
                "id": i,
                "width": 640,
                "height": 480,
                "neg_category_ids": [
                    int(c)
                    for c in rng.choice(n_cats, 10, replace=False) + 1
                    if c + 1 not in present
                ],
                "not_exhaustive_category_ids": [],
            }
        )
        for _ in range(8):
            x, y, w, h = (
                rng.uniform(0, 500),
                rng.uniform(0, 350),
                rng.uniform(10, 140),
                rng.uniform(10, 130),
            )
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(rng.choice(present)),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        xy = rng.uniform(0, 500, (per_image, 2))
        wh = rng.uniform(10, 140, (per_image, 2))
        cat = rng.choice(present, per_image)
        score = rng.random(per_image)
        for k in range(per_image):
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(cat[k]),
                    "bbox": [round(float(v), 2) for v in (*xy[k], *wh[k])],
                    "score": round(float(score[k]), 4),
                }
            )
    gt_path, dt_path = folder / "gt.json", folder / "dt.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    dt_path.write_text(json.dumps(dets))
    return gt_path, dt_path


def run(gt: Path, dt: Path, protocol: str) -> tuple[float, float, str]:
    code = (
        "from ovdet.eval import evaluate_detections; "
        f"r = evaluate_detections({str(gt)!r}, {str(dt)!r}, protocol={protocol!r}); "
        "import resource; "
        "print(r.metrics['AP'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    ap, peak_mb = out.stdout.split()
    return elapsed, float(peak_mb), ap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--per-image", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt, dt = make_files(Path(tmp), args.images, args.per_image)
        n = args.images * args.per_image
        print(f"{n:,} detections, results file {dt.stat().st_size / 2**20:.0f} MiB")
        for protocol in ("coco", "lvis"):
            elapsed, peak, ap = run(gt, dt, protocol)
            print(f"{protocol:>5}: {elapsed:6.1f} s, peak RSS {peak:7.0f} MiB, AP {ap}")


if __name__ == "__main__":
    main()
