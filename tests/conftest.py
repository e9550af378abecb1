"""Shared fixtures: tiny random-weight CLIP saved and re-loaded offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from ovdet.models.random_clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from ovdet.models.clip import ClipModel

    return ClipModel.from_pretrained(str(tiny_clip_dir))
