"""What SAM2CLIP saves: FLOPs, parameters and time per image of SAM's image encoder + CLIP's
tower (the feature-crop baseline runs both) against CLIP's tower + the SAM2CLIP adapter, at the
shapes world's sizes (128 px). FLOPs are counted by torch's FlopCounterMode.

    python benchmarks/sam2clip_cost.py [--run runs/sam2clip]   (default: an untrained adapter)
"""

from __future__ import annotations

import argparse

import torch
from timing import timed
from transformers import SamModel

from ovdet.experiments.ovsam import gflops, params_m
from ovdet.methods.ovsam.sam2clip import ClipFeatures, build_adapter, load_sam2clip
from ovdet.models.bundled import checkpoint_folder
from ovdet.models.loader import load_model
from ovdet.models.sam import normalize_sam


def cost(fn, repeats: int = 20) -> tuple[float, float]:
    """(GFLOPs of one call, seconds per call: the median of `repeats`)."""
    return gflops(fn), timed(fn, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a train-sam2clip folder (default: untrained)")
    args = p.parse_args()
    torch.set_num_threads(1)
    clip = load_model("shapes-clip")
    sam = SamModel.from_pretrained(str(checkpoint_folder("shapes-sam"))).eval()
    if args.run:
        adapter = load_sam2clip(args.run)[0].adapter
    else:
        adapter = build_adapter(clip, sam, 128, 2).eval()
    features = ClipFeatures(clip)
    image = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    with torch.inference_mode():
        sam_cost = cost(lambda: sam.get_image_embeddings(normalize_sam(image)))
        clip_cost = cost(lambda: features(image))
        adapter_cost = cost(lambda: adapter(features(image)))
    rows = [
        ("SAM encoder + CLIP tower (feature-crop)", sam_cost[0] + clip_cost[0],
         sam_cost[1] + clip_cost[1], params_m(sam.vision_encoder, clip.model.vision)),
        ("CLIP tower + SAM2CLIP adapter", adapter_cost[0], adapter_cost[1],
         params_m(clip.model.vision, adapter)),
    ]  # fmt: skip
    print("| image side 128 | GFLOPs | ms per image (1 thread) | parameters (M) |")
    print("|---|---:|---:|---:|")
    for name, flops, seconds, millions in rows:
        print(f"| {name} | {flops:.3f} | {1000 * seconds:.1f} | {millions:.2f} |")
    shared = params_m(sam.prompt_encoder, sam.mask_decoder)
    print(f"(SAM's prompt encoder and mask decoder, shared by both: {shared:.2f} M)")


if __name__ == "__main__":
    main()
