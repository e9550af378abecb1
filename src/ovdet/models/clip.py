"""CLIP over transformers: text, image and dense (per-location) embeddings in the joint space.

Any `CLIPModel` checkpoint loads by hub id, alias (`clip-b16`, ...) or local folder; the shared
pre-processing and batching live in `VisionLanguageModel`.

Dense embeddings for ViT towers (`encode_dense`): a ViT's patch tokens after the last block are not
aligned with text, because CLIP only trains the class token's output. We follow MaskCLIP
(Zhou et al., ECCV 2022) with ClearCLIP's refinement (Lan et al., ECCV 2024): in the last block
each patch token attends only to itself, i.e. its output is the value projection followed by the
attention output projection, with the residual branch and the MLP dropped; the result goes through
the same post-LayerNorm and visual projection as the class token. This keeps every location in the
image-text space at the cost of no extra forward: the same pass also yields the global embedding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ovdet.models.registry import CLIP_ALIASES, load_weights
from ovdet.models.vlm import VisionLanguageModel

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipModel(VisionLanguageModel):
    """A frozen transformers `CLIPModel` (ViT towers) behind the `VisionLanguageModel` interface."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        name: str = "clip",
    ) -> None:
        vision = model.config.vision_config
        super().__init__(
            model,
            tokenizer,
            image_size=vision.image_size,
            patch_size=vision.patch_size,
            embed_dim=model.config.projection_dim,
            max_text_length=model.config.text_config.max_position_embeddings,
            mean=mean,
            std=std,
            name=name,
        )

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> ClipModel:
        """Load a CLIP checkpoint by alias, hub id or local folder (see `CLIP_ALIASES`)."""
        return load_weights(
            lambda target: cls.from_target(target, name_or_path, dtype),
            name_or_path,
            CLIP_ALIASES,
            "CLIP",
        ).to(device)

    @classmethod
    def from_target(cls, target: str, name: str, dtype: torch.dtype | None = None) -> ClipModel:
        """Load from a resolved hub id or folder (errors are the caller's to explain)."""
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(target, dtype=dtype or torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(target)
        mean, std = read_mean_std(target)
        return cls(model, tokenizer, mean, std, name=name)

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.model.text_projection(out.pooler_output)

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.vision_model(pixel_values=pixel_values)
        return self.model.visual_projection(out.pooler_output)

    def _dense_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = pixel_values.shape[-2:]
        vision = self.model.vision_model
        out = vision(
            pixel_values=pixel_values,
            output_hidden_states=True,
            interpolate_pos_encoding=(h, w) != (self.image_size, self.image_size),
        )
        last = vision.encoder.layers[-1]
        x = last.layer_norm1(out.hidden_states[-2][:, 1:])  # (B, hw, C) input of the last block
        x = last.self_attn.out_proj(last.self_attn.v_proj(x))  # self-attention to itself only
        x = self.model.visual_projection(vision.post_layernorm(x))  # (B, hw, D)
        dense = x.transpose(1, 2).reshape(
            x.shape[0], -1, h // self.patch_size, w // self.patch_size
        )
        return dense, self.model.visual_projection(out.pooler_output)

    def _fingerprint_tensors(self) -> Iterable[torch.Tensor]:
        text = self.model.text_model
        yield self.model.text_projection.weight
        yield text.final_layer_norm.weight
        yield text.embeddings.token_embedding.weight.flatten()[::97]


def read_mean_std(target: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Image mean and std from the checkpoint's preprocessor_config.json (OpenAI's if absent)."""
    from transformers.utils import cached_file

    path = cached_file(
        target, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
    )
    if path is None:
        return OPENAI_MEAN, OPENAI_STD
    with open(path) as f:
        cfg = json.load(f)
    return tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD))
