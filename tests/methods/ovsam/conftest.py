"""Shared by the Open-Vocabulary SAM tests: the frozen teachers and one short SAM2CLIP run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from once import built_once
from transformers import SamModel

from ovdet.methods.ovsam.sam2clip import (
    ClipFeatures,
    Sam2ClipConfig,
    build_adapter,
    held_out_mse,
    train_sam2clip,
)
from ovdet.models.bundled import checkpoint_folder
from ovdet.models.loader import load_model
from ovdet.train.shapes_sam import scene_miou


@pytest.fixture(scope="session")
def teachers():
    clip = load_model("shapes-clip")
    sam = SamModel.from_pretrained(str(checkpoint_folder("shapes-sam"))).eval()
    return clip, sam.requires_grad_(False)


SAM2CLIP_TEST = Sam2ClipConfig(steps=25, warmup=5, val_scenes=16, checkpoint_every=0, size=128)


@pytest.fixture(scope="session")
def sam2clip_run(tmp_path_factory, worker_id, teachers):
    """25 steps of distillation (batch 8), built once for all xdist workers, and the untrained
    adapter's scores on the same scenes: (folder, config, before, after)."""
    cfg = SAM2CLIP_TEST

    def build(folder: Path) -> None:
        clip, sam = teachers
        torch.manual_seed(cfg.seed)
        untrained = build_adapter(clip, sam, cfg.size, cfg.blocks).eval()
        features = ClipFeatures(clip)
        before = {
            "miou": scene_miou(sam, cfg, cfg.val_scenes, lambda im: untrained(features(im))),
            "mse": held_out_mse(untrained, features, sam, cfg),
        }
        train_sam2clip(folder / "run", cfg, progress=False)
        (folder / "before.json").write_text(json.dumps(before))

    root = built_once(tmp_path_factory, worker_id, "sam2clip-run", build)
    after = json.loads((root / "run" / "report.json").read_text())
    return root / "run", cfg, json.loads((root / "before.json").read_text()), after
