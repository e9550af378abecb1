"""Shared fixtures: tiny random-weight CLIP saved and re-loaded offline."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread per test process: two threads on two busy cores ran the suite up to 13x slower, and
# `make test` runs two processes (pytest-xdist) instead.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from ovdet.models.random_clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from ovdet.models.clip import ClipModel

    return ClipModel.from_pretrained(str(tiny_clip_dir))


TINY_SAM = dict(
    vision_config=dict(
        hidden_size=32,
        output_channels=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16,
        window_size=2,
        global_attn_indexes=(1,),
        num_pos_feats=16,
        mlp_dim=64,
    ),
    prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16),
    mask_decoder_config=dict(
        hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
    ),
)


@pytest.fixture(scope="session")
def tiny_sam_dir(tmp_path_factory):
    """A random-weight `SamModel` (64 px input) saved with `save_pretrained`."""
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-sam")
    SamModel(SamConfig(**TINY_SAM)).save_pretrained(folder)
    return folder
