"""Peak memory and throughput of the dataset pass (`ovdet detect --images DIR`).

Generates a shapes world's det-val split of `--images` scenes (128 px), then runs the bundled
shapes-vild over its first `--small` images and over all of them, each in a fresh process, and
prints wall time, images/s and peak resident memory: flat memory means the two peaks match.
Then the same first `--small` images with batch 1 vs the default batch 8 (images/s ratio), and
with `--engine ray` (2 local actors, Ray's start-up included) vs the single process, over the
small set and over all images.

With `--trend`, instead: one in-process pass over all images, printing the resident set every
250 images (a leak shows as an upward trend; a peak alone can be a transient).

    python benchmarks/dataset_detect.py [--images 2000] [--small 200] [--no-ray] [--trend]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TREND = """
import sys, torch
torch.set_num_threads(1)
import ovdet
from ovdet.data.image_list import find_images
from ovdet.runner import run_detection
from ovdet.vocab.parse import parse_vocabulary

def rss():
    lines = open("/proc/self/status").read().splitlines()
    return next(int(ln.split()[1]) // 1024 for ln in lines if ln.startswith("VmRSS"))

samples = []
run_detection(
    ovdet.load("shapes-vild", text_cache=None),
    parse_vocabulary("circle, square, triangle, star, crescent, ring, trapezoid"),
    find_images(sys.argv[1]), sys.argv[2], {"benchmark": "trend"}, progress=False,
    on_image=lambda i, image, regions: samples.append((i, rss())) if i % 250 == 0 else None,
)
print("RSS MiB every 250 images:", samples)
"""

CHILD = """
import resource, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from ovdet.cli.main import main
code = main(sys.argv[2:])
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, code)
"""


def run(images: str, out: Path, threads: int, *extra: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one `ovdet detect` dataset pass in a fresh process."""
    args = ["detect", "--images", images, "--model", "shapes-vild", "--draw", "0"]
    args += ["--vocab", "circle, square, triangle, star, crescent, ring, trapezoid", "--out"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), *args, str(out), *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    elapsed = time.perf_counter() - start
    peak = next(ln for ln in done.stdout.splitlines() if ln.startswith("PEAK")).split()[1]
    return elapsed, float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the pass")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")
    parser.add_argument("--trend", action="store_true", help="only the in-process RSS trend")
    args = parser.parse_args()
    from ovdet.data.shapes.generate import WorldConfig, generate_world

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        zeros = dict(det_train=0, det_style=0, det_captions=0, det_val_uniform=0)
        world = generate_world(
            root / "w",
            WorldConfig(captions=1, det_val=args.images, det_captions_companion=0, **zeros),
        )
        images = sorted((world / "det-val" / "images").glob("*.png"))
        if args.trend:
            folder, out = str(world / "det-val" / "images"), str(root / "t.json")
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            done = subprocess.run(
                [sys.executable, "-c", TREND, folder, out],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            print(done.stdout.strip())
            return
        small = root / "small"
        small.mkdir()
        for p in images[: args.small]:
            (small / p.name).symlink_to(p)
        rows = {}
        for n, folder in ((args.small, small), (len(images), world / "det-val" / "images")):
            seconds, peak = run(str(folder), root / f"{n}.json", args.threads)
            rows[n] = (seconds, peak)
            print(f"{n:>6} images: {seconds:6.1f} s, {n / seconds:5.1f} img/s, peak {peak:.0f} MiB")
        (s_small, p_small), (_, p_all) = rows.values()
        print(f"peak RSS ratio {len(images)} / {args.small} images: {p_all / p_small:.3f}")
        one, _ = run(str(small), root / "b1.json", args.threads, "--batch-size", "1")
        print(f"batch 8 vs batch 1 on {args.small} images: {one / s_small:.2f}x the throughput")
        if args.no_ray:
            return
        for n, folder in ((args.small, small), (len(images), world / "det-val" / "images")):
            ray_s, ray_peak = run(str(folder), root / f"r{n}.json", args.threads, "--engine", "ray")
            local_s = rows[n][0]
            print(
                f"Ray (2 local actors) on {n} images: {ray_s:.1f} s vs {local_s:.1f} s in one "
                f"process: {local_s / ray_s:.2f}x the throughput (driver peak {ray_peak:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
