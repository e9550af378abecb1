"""Cost per image of RegionSpot at real sizes: SAM ViT-B + CLIP ViT-B/16 (random weights; the
compute equals the real models'), 640x480 image, 10 / 100 / 300 boxes.

Prints, measured in this one run: the SAM image encoder (once per image), the CLIP feature map
(once per image), the box-prompted mask decoder (batched) and the fusion module, and RegionSpot's
total next to CLIP on crops. RegionSpot's cost is two backbone passes per image plus a light part
per box, so it grows slowly with the number of boxes while crops grow linearly.

    python benchmarks/regionspot.py [--boxes 10 100 300] [--threads N]
"""

from __future__ import annotations

import time

import torch
from recognize import (  # benchmarks/recognize.py (it puts tests/random_clip.py on the path)
    benchmark_args,
    build_random_clip,
    random_boxes,
    random_sam,
    timed,
)

from ovdet.methods.regionspot.model import RegionSpot, RegionSpotConfig
from ovdet.methods.regionspot.recognizer import FeatureExtractor
from ovdet.models.clip import ClipModel
from ovdet.models.sam import SamBackend
from ovdet.recognize.crop import CropEmbedder


def main() -> None:
    args = benchmark_args(__doc__)
    torch.manual_seed(0)
    sam = SamBackend(random_sam(), name="random SAM ViT-B")
    model, tokenizer = build_random_clip("vit-b16")
    clip = ClipModel(model, tokenizer, name="random ViT-B/16")
    features = FeatureExtractor(sam, clip)
    module = RegionSpot(RegionSpotConfig(token_dim=sam.token_dim, clip_dim=clip.embed_dim)).eval()
    crop = CropEmbedder(clip, batch_size=32)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=g)
    print(
        f"SAM ViT-B + CLIP ViT-B/16 (random weights), image 640x480, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    state = sam.set_image(image)
    encoder = timed(lambda: sam.set_image(image), 1)
    clip_map = timed(lambda: features.dense.dense_map(image), 2)
    print(f"once per image: SAM image encoder {encoder:.2f} s, CLIP feature map {clip_map:.2f} s")
    print("boxes | SAM decoder s | module s | RegionSpot s/image | crop s/image | crop/RegionSpot")
    for n in args.boxes:
        boxes = random_boxes(n, 480, 640, g)
        decoder = timed(lambda b=boxes: sam.predict_boxes(state, b), 1)
        f = features(image, boxes, state)

        @torch.inference_mode()
        def fuse(f=f) -> torch.Tensor:
            return module(
                f["tok_transformer"][None],
                (f["xyxy"] * f["norm"])[None],
                f["clip_map"].float()[None],
                f["clip_global"][None],
            )

        fusion = timed(fuse, 2)
        total = encoder + clip_map + decoder + fusion
        start = time.perf_counter()
        crop.embed(image, boxes)
        crops = time.perf_counter() - start
        print(
            f"{n:5d} | {decoder:13.3f} | {fusion:8.3f} | {total:18.2f} | {crops:12.2f} | "
            f"{crops / total:14.1f}x"
        )


if __name__ == "__main__":
    main()
