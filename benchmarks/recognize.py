"""Cost per image of region recognition: `crop` (CLIP on 1x + 1.5x crops) vs `dense` (one pass).

Uses a real-size ViT-B/16 CLIP with random weights (the compute equals the real model's) on a
640x480 image, at 10 / 100 / 300 boxes, and prints seconds per image and the crop/dense ratio,
all measured in this one run. Also times NMS on 10,000 boxes. Target: dense >= 30x faster than
crop at 100 boxes.

    python benchmarks/recognize.py [--boxes 10 100 300] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ovdet.models.clip import ClipModel
from ovdet.ops.nms import nms
from ovdet.recognize.crop import CropEmbedder
from ovdet.recognize.dense import DenseEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from random_clip import build_random_clip  # noqa: E402  (a test fixture, not library code)
from timing import timed  # noqa: E402


def random_boxes(n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 16 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    return torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1)


def random_sam() -> torch.nn.Module:
    """A random-weight SAM ViT-B (transformers' SamConfig defaults) with its weights drawn at std
    0.02. SamConfig's own initializer_range is 1e-10: activations then sink into denormal floats
    and a CPU runs the encoder about 10x slower than with real weights (72 s vs 7 s on this
    machine), which would time the arithmetic unit, not the model."""
    from transformers import SamConfig, SamModel

    config = SamConfig()
    for part in (config, config.vision_config, config.prompt_encoder_config,
                 config.mask_decoder_config):  # fmt: skip
        if hasattr(part, "initializer_range"):
            part.initializer_range = 0.02
    torch.manual_seed(0)
    return SamModel(config)


def benchmark_args(doc: str | None) -> argparse.Namespace:
    """--boxes and --threads, shared by the benchmarks; sets torch's thread count."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--boxes", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = benchmark_args(__doc__)
    model, tokenizer = build_random_clip("vit-b16")
    clip = ClipModel(model, tokenizer, name="random ViT-B/16")
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=g)
    crop, dense = CropEmbedder(clip, batch_size=32), DenseEmbedder(clip)
    print(
        f"ViT-B/16 (random weights), image 640x480, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'boxes':>6} {'crop s/img':>11} {'dense s/img':>12} {'crop/dense':>11}")
    for n in args.boxes:
        boxes = random_boxes(n, 480, 640, g)
        t_crop = timed(lambda b=boxes: crop.embed(image, b), repeats=1)
        t_dense = timed(lambda b=boxes: dense.embed(image, b), repeats=5)
        print(f"{n:>6} {t_crop:>11.3f} {t_dense:>12.3f} {t_crop / t_dense:>10.1f}x", flush=True)
    boxes = random_boxes(10_000, 480, 640, g)
    scores = torch.rand(10_000, generator=g)
    t_nms = timed(lambda: nms(boxes, scores, 0.5), repeats=3)
    print(f"nms on 10,000 boxes: {t_nms:.3f} s")


if __name__ == "__main__":
    main()
