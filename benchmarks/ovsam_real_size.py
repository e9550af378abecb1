"""Open-Vocabulary SAM at the paper's sizes, with random weights: what one image costs before the
prompts in feature-crop (SAM-H's image encoder and a CLIP pass at SAM's 1024 px) against OV-SAM
(the same CLIP pass and the SAM2CLIP adapter: SAM-H's last 5 blocks and neck over CLIP's levels).
GFLOPs are counted by torch's FlopCounterMode on the meta device (no weights, no compute; a
multiply-add counts 2, so the paper's multiply-accumulate figures are half of these).
transformers has no ResNet CLIP, so the paper's RN50x16 is replaced by a ViT CLIP read at four
evenly spaced layers (`vit_levels`), fed at the side that puts its patch grid on SAM's 64 x 64.

    python benchmarks/ovsam_real_size.py [--clip vit-b16|vit-l14] [--blocks 5] [--time]

--time also builds the models with real (random) weights and times one image of each pipeline
on this machine's threads (several minutes on 2 cores; SAM-H alone is 2.5 GB).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, SamConfig, SamModel

from ovdet.experiments.ovsam import gflops, params_m
from ovdet.methods.ovsam.adapter import Sam2ClipAdapter, vit_levels

SAM_H = dict(
    hidden_size=1280,
    num_hidden_layers=32,
    num_attention_heads=16,
    global_attn_indexes=[7, 15, 23, 31],
    mlp_dim=5120,
)
CLIPS = {  # name -> (vision config, input side giving SAM's 64 x 64 grid)
    "vit-b16": (dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, patch_size=16, image_size=224), 1024),
    "vit-l14": (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                     num_attention_heads=16, patch_size=14, image_size=224), 896),
}  # fmt: skip


def tower(clip: CLIPVisionModel) -> torch.nn.Module:
    """The ViT itself (transformers 5 puts its parts on the model, 4 under .vision_model)."""
    return getattr(clip, "vision_model", clip)


def build(clip_name: str, blocks: int) -> tuple[SamModel, CLIPVisionModel, Sam2ClipAdapter]:
    """SAM-H, the CLIP tower and the adapter (SAM-H's last `blocks` layers), on the current
    default device."""
    vision, side = CLIPS[clip_name]
    sam = SamModel(SamConfig(vision_config=SAM_H)).eval()
    clip = CLIPVisionModel(CLIPVisionConfig(**vision)).eval()
    levels = vit_levels(tower(clip), torch.zeros(1, 3, side, side))
    grid = int(sam.config.vision_config.image_size) // int(levels[0].shape[-1])  # 16
    adapter = Sam2ClipAdapter(
        [int(lv.shape[1]) for lv in levels], [grid] * len(levels), sam.vision_encoder, blocks
    ).eval()
    return sam, clip, adapter


def pipelines(sam, clip, adapter, side: int) -> dict[str, tuple]:
    """name -> (callable on one image, modules it runs)."""
    device = next(sam.parameters()).device  # meta: shapes only
    big = torch.zeros(1, 3, 1024, 1024, device=device)
    small = torch.zeros(1, 3, side, side, device=device)

    def clip_levels_at_side():
        return vit_levels(tower(clip), small)

    return {
        "feature-crop: SAM-H encoder + CLIP": (
            lambda: (sam.get_image_embeddings(big), clip_levels_at_side()),
            (sam.vision_encoder, clip),
        ),
        "OV-SAM: CLIP + SAM2CLIP adapter": (
            lambda: adapter(clip_levels_at_side()),
            (clip, adapter),
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", choices=sorted(CLIPS), default="vit-b16")
    p.add_argument("--blocks", type=int, default=5, help="SAM ViT blocks in the adapter")
    p.add_argument("--time", action="store_true", help="also time one image with real weights")
    args = p.parse_args()
    side = CLIPS[args.clip][1]
    with torch.device("meta"):
        models = build(args.clip, args.blocks)
    rows = {}
    with torch.inference_mode():
        for name, (fn, modules) in pipelines(*models, side).items():
            rows[name] = [gflops(fn), params_m(*modules)]
    if args.time:
        torch.manual_seed(0)
        real = build(args.clip, args.blocks)
        with torch.inference_mode():
            for name, (fn, _) in pipelines(*real, side).items():
                start = time.perf_counter()
                fn()
                rows[name].append(time.perf_counter() - start)
    title = f"SAM-H, {args.clip} at {side} px, {args.blocks} adapter blocks"
    head = f"| {title} | GFLOPs | params (M) |"
    print(head + (f" s/image ({torch.get_num_threads()} threads) |" if args.time else ""))
    print("|---|---:|---:|" + ("---:|" if args.time else ""))
    for name, r in rows.items():
        cells = [f"{r[0]:,.0f}", f"{r[1]:.0f}"] + ([f"{r[2]:.1f}"] if args.time else [])
        print(f"| {name} | " + " | ".join(cells) + " |")
    crop, ours = rows.values()
    print(f"OV-SAM / feature-crop: GFLOPs {ours[0] / crop[0]:.2f}, params {ours[1] / crop[1]:.2f}"
          + (f", time {ours[2] / crop[2]:.2f}" if args.time else ""))  # fmt: skip


if __name__ == "__main__":
    main()
