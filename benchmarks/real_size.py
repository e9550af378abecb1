"""ViLD at the papers' size: ResNet-50 + FPN at 1024 px (random weights; the compute equals a
pretrained one's), through the same code `ovdet train vild --backbone` runs.

Rows, each measured in its own process (so that peak memory is the row's own):
- train bs1 / bs2: seconds per training step (median of 3 after a warm-up), batch 1 and 2;
- infer 80 / infer 1203: seconds per detected image with vocabularies of 80 and 1,203 names
  (goal: 1,203 names cost at most 1.1x 80);
- loader w0 / loader w2: the data pipeline's images per second (decode a 1280x960 JPEG,
  letterbox to 1024, flip, large-scale jitter) with 0 and 2 worker processes;
- dataset-r50 w0 / w2, dataset-shapes w0 / w2: `ovdet detect --images` (`runner.run_detection`)
  over sixteen 1280x960 JPEGs, batches of 2, decoding in the model's thread (w0) or 2 threads
  ahead (w2), with this detector or the bundled shapes-vild (a small, fast model: where
  decoding matters): images per second and the share of the run the model waited for images.
Peak memory is the process's peak resident set size. One run, one machine: ratios are what to
read on a noisy machine.

    python benchmarks/real_size.py [--side 1024] [--device cpu|cuda] [--precision fp32|bf16]
        [--rows train-bs1,...] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import sync, timed  # benchmarks/timing.py

ROWS = ("train-bs1", "train-bs2", "infer-80", "infer-1203", "loader-w0", "loader-w2")
ROWS += ("dataset-r50-w0", "dataset-r50-w2", "dataset-shapes-w0", "dataset-shapes-w2")


def resnet50(folder: Path) -> Path:
    """A random-weight ResNet-50 backbone (transformers' ResNetConfig defaults) in `folder`."""
    from transformers import ResNetBackbone, ResNetConfig

    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        ResNetBackbone(ResNetConfig(out_features=["stage1"])).save_pretrained(folder)
    return folder


def build_vild(folder: Path, classes: int, device: str):
    from ovdet.detect.build import backbone_entry
    from ovdet.detect.rpn import FPN_SIZES, RPNConfig
    from ovdet.methods.vild.model import ViLD, ViLDConfig

    torch.manual_seed(0)
    backbone, _ = backbone_entry(str(folder), ["stage1", "stage2", "stage3", "stage4"], 2)
    text = torch.nn.functional.normalize(torch.randn(classes, 512), dim=-1)
    config = ViLDConfig(embed_dim=512, hidden=1024, roi_batch=512)
    rpn = RPNConfig(sizes=FPN_SIZES, pre_nms=2000, post_nms=1000)
    return ViLD(backbone, text, config, rpn).to(device)


def synthetic_targets(side: int, g: torch.Generator):
    n = 8
    xy = torch.rand(n, 2, generator=g) * side * 0.7
    wh = 32 + torch.rand(n, 2, generator=g) * side * 0.25
    return torch.cat([xy, xy + wh], 1).clamp(max=side), torch.randint(80, (n,), generator=g)


def row_train(args: argparse.Namespace, batch: int) -> dict:
    from ovdet.train.precision import Precision

    model = build_vild(resnet50(args.cache), 80, args.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    amp = Precision(args.precision, torch.device(args.device).type)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, args.side, args.side, generator=g).to(args.device)
    targets = [synthetic_targets(args.side, g) for _ in range(batch)]
    boxes = [b.to(args.device) for b, _ in targets]
    labels = [lab.to(args.device) for _, lab in targets]

    def step() -> None:
        with amp.autocast():
            losses = model.losses(pixels, [(args.side, args.side)] * batch, boxes, labels)
        opt.zero_grad(set_to_none=True)
        amp.backward(sum(v.float() for v in losses.values()))
        amp.step(opt)
        sync(args.device)

    return {"s": timed(step, 3), "per": "step"}


def row_infer(args: argparse.Namespace, classes: int) -> dict:
    from ovdet.train.precision import Precision

    model = build_vild(resnet50(args.cache), 80, args.device).eval()
    amp = Precision(args.precision, torch.device(args.device).type)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, args.side, args.side, generator=g).to(args.device)
    text = torch.nn.functional.normalize(torch.randn(classes, 512, generator=g), dim=-1)
    text = text.to(args.device)
    found = []

    def infer() -> None:
        with torch.no_grad(), amp.autocast():
            found[:] = model.detect(pixels, [(args.side, args.side)], text)
        sync(args.device)

    return {"s": timed(infer, 3), "per": "image", "detections": len(found[0])}


def jpegs(args: argparse.Namespace) -> tuple[Path, dict]:
    """Sixteen smooth random 1280x960 JPEGs in the cache and a COCO file naming them."""
    from PIL import Image

    folder = args.cache / "jpegs"
    folder.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(2)
    images, anns = [], []
    for i in range(16):
        path = folder / f"{i}.jpg"
        if not path.is_file():
            low = torch.rand(3, 30, 40, generator=g)
            big = torch.nn.functional.interpolate(low[None], size=(960, 1280), mode="bicubic")
            array = (big[0].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
            Image.fromarray(array).save(path, quality=90)
        images.append({"id": i + 1, "file_name": path.name, "height": 960, "width": 1280})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [100, 80, 300, 200]})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    return folder, gt


def row_loader(args: argparse.Namespace, workers: int) -> dict:
    from ovdet.data.coco import CocoDetection
    from ovdet.data.pipeline import Augment, StepBatches, StepLoader

    folder, gt = jpegs(args)
    dataset = CocoDetection(gt, folder, [1], args.side, cache=False)
    steps, batch = 12, 2
    batches = StepBatches(dataset, 0, batch, augment=Augment(flip=True, lsj=True))
    loader = StepLoader(batches, 0, steps + 2, workers)
    loader.next_batch(0)  # workers started, first batch ready
    loader.next_batch(1)
    start = time.perf_counter()
    for step in range(2, steps + 2):
        loader.next_batch(step)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * batch / seconds}


class RealSize:
    """The R50-FPN ViLD as `ovdet detect` runs a transformers-backbone checkpoint
    (`detect_images`: letterbox, channels-last, one backbone pass a batch)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.model = build_vild(resnet50(args.cache), 80, args.device).eval()
        self.model.backbone.to(memory_format=torch.channels_last)
        self.spec = {"side": args.side, "backbone": {"name": "resnet-50"}}
        self.device, self.precision = args.device, args.precision

    @torch.inference_mode()
    def detect_batch(self, images: list, vocab: object) -> list:
        from ovdet.methods.vild.detector import detect_images

        g = torch.Generator().manual_seed(0)  # random text embeddings, one per name
        text = torch.nn.functional.normalize(torch.randn(len(vocab), 512, generator=g), dim=-1)
        return detect_images(
            self.model, self.spec, images, text.to(self.device), None, self.precision
        )


def row_dataset(args: argparse.Namespace, model: str, workers: int) -> dict:
    from ovdet.data.image_list import ImageList, find_images
    from ovdet.runner import run_detection
    from ovdet.vocab.parse import parse_vocabulary

    folder, _ = jpegs(args)
    if model == "r50":
        detector = RealSize(args)
    else:
        from ovdet.methods.vild.detector import ViLDDetector

        detector = ViLDDetector("shapes-vild", args.device, text_cache=None)
    images, vocab = find_images(folder), parse_vocabulary("circle, square, star")
    with tempfile.TemporaryDirectory() as out:
        warm = ImageList(images.ids[:2], images.paths[:2])  # first-call costs left out
        run_detection(detector, vocab, warm, Path(out) / "w.json", {}, batch_size=2, progress=False)
        summary = run_detection(
            detector, vocab, images, Path(out) / "r.json", {}, batch_size=2, workers=workers,
            progress=False,
        )  # fmt: skip
    return {"images_per_s": summary.images_per_second, "idle": summary.idle_share}


def run_row(args: argparse.Namespace) -> dict:
    kind, value = args.row.rsplit("-", 1)
    if kind == "train":
        out = row_train(args, int(value[2:]))
    elif kind == "infer":
        out = row_infer(args, int(value))
    elif kind.startswith("dataset"):
        out = row_dataset(args, kind.split("-")[1], int(value[1:]))
    else:
        out = row_loader(args, int(value[1:]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    if torch.device(args.device).type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    return out | {"peak_mib": round(peak)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--row", help=argparse.SUPPRESS)  # one row, in a child process
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ovdet-real-size")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.row:
        print(json.dumps(run_row(args)))
        return
    resnet50(args.cache)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    print(
        f"ViLD R50-FPN, random weights, {args.side} px, {args.device} {args.precision}, torch "
        f"{torch.__version__}, {args.threads or torch.get_num_threads()} threads"
    )
    results = {}
    for row in rows:
        command = [sys.executable, __file__, "--row", row, "--side", str(args.side)]
        command += ["--device", args.device, "--precision", args.precision]
        command += ["--cache", str(args.cache)]
        command += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"row {row} failed:\n{done.stderr[-2000:]}")
        results[row] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[row]
        if "s" in r:
            extra = f"  {r['detections']} detections" if "detections" in r else ""
            print(f"{row:>11}  {r['s']:8.2f} s/{r['per']}  peak {r['peak_mib']:>6} MiB{extra}")
        else:
            idle = f"  model idle {r['idle']:.1%}" if "idle" in r else ""
            print(
                f"{row:>11}  {r['images_per_s']:8.2f} images/s  peak {r['peak_mib']:>6} MiB{idle}"
            )
    if {"infer-80", "infer-1203"} <= results.keys():
        ratio = results["infer-1203"]["s"] / results["infer-80"]["s"]
        print(f"1,203 names / 80 names: {ratio:.2f}x (goal <= 1.1x)")
    if {"train-bs1", "train-bs2"} <= results.keys():
        ratio = results["train-bs2"]["s"] / results["train-bs1"]["s"]
        print(f"batch 2 / batch 1 per step: {ratio:.2f}x")
    if {"loader-w0", "loader-w2"} <= results.keys():
        ratio = results["loader-w2"]["images_per_s"] / results["loader-w0"]["images_per_s"]
        print(f"loader, 2 workers / 0: {ratio:.2f}x")


if __name__ == "__main__":
    main()
