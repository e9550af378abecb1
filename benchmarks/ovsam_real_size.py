"""Open-Vocabulary SAM at the paper's sizes, with random weights: what one image costs before the
prompts in feature-crop (SAM-H's image encoder and a CLIP pass at SAM's 1024 px) against OV-SAM
(the same CLIP pass and the SAM2CLIP adapter: SAM-H's last 5 blocks and neck over CLIP's levels).
GFLOPs are counted by torch's FlopCounterMode on the meta device (no weights, no compute; a
multiply-add counts 2, so the paper's multiply-accumulate figures are half of these).
transformers has no ResNet CLIP, so the paper's RN50x16 is replaced by a ViT CLIP read at four
evenly spaced layers (`vit_levels`), fed at the side that puts its patch grid on SAM's 64 x 64.

    python benchmarks/ovsam_real_size.py [--clip vit-b16|vit-l14] [--blocks 5] [--time]
    python benchmarks/ovsam_real_size.py --train [--prompts 40]

--time also builds the models with real (random) weights and times one image of each pipeline
on this machine's threads (several minutes on 2 cores; SAM-H alone is 2.5 GB).

--train times one training step (one image, forward, backward and AdamW) of each stage at the
sizes a user trains on, SAM-B and CLIP ViT-B/16 at SAM's 1024 px, through ovdet's own training
code (random weights saved and loaded as checkpoints): SAM-B's encoder pass that fills
SAM2CLIP's teacher cache, a SAM2CLIP step on a cached embedding (the adapter: 2 SAM-B blocks),
and a CLIP2SAM step with `--prompts` objects (half boxes, half points). Each step's FLOPs
(forward and backward, FlopCounterMode) give the GPU minutes of one epoch of COCO train2017
(118,287 images) at an assumed sustained throughput (`--tflops`, default 200: about half of an
H100's dense bf16 peak; a stated assumption, not a measurement).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, SamConfig, SamModel

from ovdet.experiments.ovsam import gflops, params_m
from ovdet.methods.ovsam.adapter import Sam2ClipAdapter, vit_levels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from random_clip import save_random_clip  # noqa: E402  (a test fixture, not library code)

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


COCO_TRAIN = 118_287  # images in COCO train2017


def training_steps(prompts: int) -> dict[str, Any]:
    """name -> a callable running one training step of one 1024-px image, SAM-B + CLIP-B/16
    checkpoints with random weights (saved, then loaded as a user's would be)."""
    import tempfile
    from dataclasses import asdict

    import torch.nn.functional as F

    from ovdet.data.coco import Sample
    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig, build_head, clip2sam_losses
    from ovdet.methods.ovsam.data import TeacherSample
    from ovdet.methods.ovsam.sam2clip import Sam2ClipBackend, _prediction, build_adapter
    from ovdet.models.loader import load_model
    from ovdet.models.sam import SamBackend

    folder = Path(tempfile.mkdtemp(prefix="ovsam-bench-"))
    torch.manual_seed(0)
    SamModel(SamConfig()).save_pretrained(folder / "sam-b")  # SamConfig's default is SAM-B
    save_random_clip(folder / "clip-b16", "vit-b16")
    sam = SamBackend.from_pretrained(str(folder / "sam-b"))
    sam.model.requires_grad_(False)
    clip = load_model(str(folder / "clip-b16"))
    adapter = build_adapter(clip, sam.model, 1024, 2)
    backend = Sam2ClipBackend(sam.model, clip, adapter)
    image = torch.randint(0, 256, (3, 1024, 1024), dtype=torch.uint8)
    target = torch.randn(256, 64, 64)
    teacher = TeacherSample("x", image.float(), (1024, 1024), target)
    adapter_opt = torch.optim.AdamW(adapter.parameters(), lr=1e-4)

    def sam2clip_step() -> None:
        adapter.train()
        loss = F.mse_loss(*_prediction(adapter, backend.features, [teacher]))
        adapter_opt.zero_grad()
        loss.backward()
        adapter_opt.step()

    cfg = Clip2SamConfig()
    head = build_head(backend, 1024, asdict(cfg))
    sam.model.mask_decoder.requires_grad_(True)
    params = [*head.parameters(), *sam.model.mask_decoder.parameters()]
    head_opt = torch.optim.AdamW(params, lr=1e-4)
    text = F.normalize(torch.randn(48, clip.embed_dim), dim=-1)
    g = torch.Generator().manual_seed(0)
    xy = torch.randint(0, 900, (prompts, 2), generator=g).float()
    boxes = torch.cat([xy, xy + 24 + torch.randint(0, 100, (prompts, 2), generator=g)], 1)
    masks = torch.zeros(prompts, 1024, 1024, dtype=torch.bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes.long().tolist(), strict=True):
        m[y0:y1, x0:x1] = True
    labels = torch.randint(0, 48, (prompts,), generator=g)
    sample = Sample(0, image.float(), 1.0, (1024, 1024), boxes, labels, masks)

    def clip2sam_step() -> None:
        head.train()
        losses = clip2sam_losses(backend, head, text, [sample], [g], cfg.box_noise)
        head_opt.zero_grad()
        sum(losses.values()).backward()
        head_opt.step()

    def teacher_pass() -> None:
        with torch.inference_mode():
            sam.set_image(image)

    return {
        "SAM-B encoder (the teacher cache, once per image)": teacher_pass,
        "SAM2CLIP step (CLIP-B + adapter, backward)": sam2clip_step,
        f"CLIP2SAM step ({prompts} prompts, head + decoder backward)": clip2sam_step,
    }


def train_table(prompts: int, tflops: float) -> None:
    """Print each training step's seconds on this CPU, its GFLOPs, and a COCO epoch's GPU minutes
    at `tflops` sustained."""
    print(
        f"| one 1024-px image, SAM-B + CLIP-B/16 | s on this CPU ({torch.get_num_threads()} "
        f"threads) | GFLOPs (fwd + bwd) | GPU min per COCO epoch at {tflops:.0f} TFLOP/s |"
    )
    print("|---|---:|---:|---:|")
    for name, step in training_steps(prompts).items():
        step()  # warm-up: allocations, AdamW's state
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
        flops = gflops(step)
        minutes = flops * 1e9 * COCO_TRAIN / (tflops * 1e12) / 60
        print(f"| {name} | {seconds:.1f} | {flops:,.0f} | {minutes:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", choices=sorted(CLIPS), default="vit-b16")
    p.add_argument("--blocks", type=int, default=5, help="SAM ViT blocks in the adapter")
    p.add_argument("--time", action="store_true", help="also time one image with real weights")
    p.add_argument("--train", action="store_true", help="time one training step of each stage")
    p.add_argument("--prompts", type=int, default=40, help="CLIP2SAM's objects per image")
    p.add_argument("--tflops", type=float, default=200.0, help="assumed GPU TFLOP/s sustained")
    args = p.parse_args()
    if args.train:
        train_table(args.prompts, args.tflops)
        return
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
