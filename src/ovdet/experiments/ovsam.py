"""Open-Vocabulary SAM's table in the shapes world, by one call: SAM2CLIP (shapes-sam's encoder
distilled into an adapter on shapes-clip's features), CLIP2SAM on it (the recognition head and
SAM's decoder, det-train base objects), then per GT object of det-val, prompted by its box or by
an interior point, the top-1 name and mask IoU (all / base / novel) of image-crop, feature-crop,
SAM2CLIP alone, the head alone and OV-SAM (see `methods.ovsam.evaluate`); with each pipeline's
image GFLOPs (torch's FlopCounterMode) and parameters. Both trainings resume; writes
results.json.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ovdet.io.atomic import write_json
from ovdet.methods.ovsam.clip2sam import Clip2SamConfig, OVSam, train_clip2sam
from ovdet.methods.ovsam.evaluate import evaluate_ovsam
from ovdet.methods.ovsam.sam2clip import Sam2ClipConfig, train_sam2clip
from ovdet.models.sam import SamBackend, normalize_sam


def reproduce_ovsam(
    out: str | Path,
    s2c: Sam2ClipConfig,
    c2s: Clip2SamConfig,
    images: int = 500,
    progress: bool = True,
) -> dict[str, Any]:
    """Train both stages into out/sam2clip and out/ovsam, evaluate on `images` det-val scenes of
    world `c2s.world_seed` -> {"rows": [{prompt, method, all, base, novel, mIoU, mIoU_base,
    mIoU_novel}], "sam2clip":
    held-out report, "cost": {pipeline: {gflops, params_m}}, "s_per_image": ...}."""
    out = Path(out)
    report = train_sam2clip(out / "sam2clip", s2c, progress)
    c2s = replace(c2s, sam2clip=str(out / "sam2clip"))
    train_clip2sam(out / "ovsam", c2s, progress)
    model = OVSam(out / "ovsam")
    sam = SamBackend.from_pretrained(s2c.sam)
    rows, seconds = evaluate_ovsam(model, sam, images, c2s.world_seed, progress)
    results = {
        "rows": [{"prompt": p, "method": m, **r} for (p, m), r in rows.items()],
        "sam2clip": report,
        "cost": image_cost(model, sam, sam.image_size),
        "s_per_image": seconds,
        "images": images,
        "configs": {"sam2clip": asdict(s2c), "clip2sam": asdict(c2s)},
    }
    write_json(out / "results.json", results, indent=1)
    return results


def gflops(fn: Any) -> float:
    """GFLOPs of one call of `fn` as torch's FlopCounterMode counts them (a multiply-add is 2)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def params_m(*modules: torch.nn.Module) -> float:
    """Millions of parameters in `modules`."""
    return sum(p.numel() for m in modules for p in m.parameters()) / 1e6


@torch.inference_mode()
def image_cost(model: OVSam, sam: SamBackend, size: int) -> dict[str, dict[str, float]]:
    """GFLOPs and parameters (millions) of what each pipeline runs once per image at `size`:
    feature-crop runs SAM's encoder and CLIP's tower; OV-SAM runs CLIP's tower and the adapter.
    SAM's prompt encoder and decoder, per prompt, are shared and listed apart."""
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    features, adapter = model.backend.features, model.backend.adapter
    clip_tower = model.clip.model.vision
    return {
        "feature-crop": {
            "gflops": gflops(lambda: sam.model.get_image_embeddings(normalize_sam(image)))
            + gflops(lambda: features(image)),
            "params_m": params_m(sam.model.vision_encoder, clip_tower),
        },
        "OV-SAM": {
            "gflops": gflops(lambda: adapter(features(image))),
            "params_m": params_m(clip_tower, adapter, model.model.head),
        },
        "shared per prompt: prompt encoder + decoder": {
            "params_m": params_m(sam.model.prompt_encoder, sam.model.mask_decoder),
        },
    }
