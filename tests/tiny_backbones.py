"""Tiny random-weight transformers backbones of the real classes, saved and re-loaded offline
(as the CLIP and SAM tests do): what `--backbone FOLDER` reads."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_config(kind: str):
    from transformers import ConvNextConfig, ResNetConfig, SwinConfig

    if kind == "resnet":
        return ResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32, 48, 64],
            depths=[1, 1, 1, 1],
            layer_type="basic",
        )
    if kind == "convnext":
        return ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
    if kind == "swin":
        return SwinConfig(
            image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=2
        )
    raise ValueError(kind)


def save_tiny_backbone(folder: Path, kind: str = "resnet", seed: int = 0) -> Path:
    """A random `<Kind>Backbone` of `tiny_config(kind)` written with `save_pretrained`."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

    torch.manual_seed(seed)
    config = tiny_config(kind)
    MODEL_FOR_BACKBONE_MAPPING[type(config)](config).save_pretrained(folder)
    return folder
