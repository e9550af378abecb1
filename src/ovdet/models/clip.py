"""CLIP over transformers: text, image and dense (per-location) embeddings in the joint space.

Any `CLIPModel` checkpoint loads by hub id, alias (`clip-b16`, ...) or local folder. Pre-processing
runs in torch on batches (resize the shortest side with antialiased bicubic, centre crop,
normalise with the checkpoint's mean and std), so it works on any device.

Dense embeddings for ViT towers (`encode_dense`): a ViT's patch tokens after the last block are not
aligned with text, because CLIP only trains the class token's output. We follow MaskCLIP
(Zhou et al., ECCV 2022) with ClearCLIP's refinement (Lan et al., ECCV 2024): in the last block
each patch token attends only to itself, i.e. its output is the value projection followed by the
attention output projection, with the residual branch and the MLP dropped; the result goes through
the same post-LayerNorm and visual projection as the class token. This keeps every location in the
image-text space at the cost of no extra forward: the same pass also yields the global embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from ovdet.errors import ImageError
from ovdet.models.registry import CLIP_ALIASES, load_weights

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipModel:
    """A frozen CLIP with batched torch pre-processing.

    Attributes:
        embed_dim: D, the width of the joint image-text space.
        image_size: S, the side of the square input the vision tower was trained on.
        patch_size: P, so `encode_dense` of an (S, S) input has (S/P, S/P) locations.
        text_forwards: number of text-tower forward passes run so far (the cache test counts them).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        name: str = "clip",
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        vision = model.config.vision_config
        self.image_size = int(vision.image_size)
        self.patch_size = int(vision.patch_size)
        self.embed_dim = int(model.config.projection_dim)
        self.max_text_length = int(model.config.text_config.max_position_embeddings)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.text_forwards = 0

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> ClipModel:
        """Load a CLIP checkpoint by alias, hub id or local folder (see `CLIP_ALIASES`)."""
        from transformers import AutoTokenizer, CLIPModel
        from transformers.utils import cached_file

        def load(target: str) -> ClipModel:
            model = CLIPModel.from_pretrained(target, dtype=dtype or torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(target)
            pre = cached_file(
                target, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
            )
            mean, std = OPENAI_MEAN, OPENAI_STD
            if pre is not None:
                with open(pre) as f:
                    cfg = json.load(f)
                mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
            return cls(model, tokenizer, mean, std, name=name_or_path)

        return load_weights(load, name_or_path, CLIP_ALIASES, "CLIP").to(device)

    def to(self, device: str | torch.device) -> ClipModel:
        """Move the model to `device` (in place); returns self."""
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.visual_projection.weight.dtype

    @property
    def logit_scale(self) -> float:
        """CLIP's learned inverse temperature, exp(logit_scale)."""
        return float(self.model.logit_scale.exp())

    @cached_property
    def fingerprint(self) -> str:
        """A short hash identifying the text tower's weights (keys the text-embedding cache)."""
        h = hashlib.sha256(type(self.model).__name__.encode())
        h.update(self.model.config.to_json_string().encode())
        for tensor in (
            self.model.text_projection.weight,
            self.model.text_model.final_layer_norm.weight,
            self.model.text_model.embeddings.token_embedding.weight.flatten()[::97],
        ):
            h.update(tensor.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    # ---- images -------------------------------------------------------------------------------

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float RGB in [0, 255] -> CLIP-normalised pixel values of the same shape."""
        return ((images / 255.0 - self.mean) / self.std).to(self.dtype)

    def preprocess(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """CLIP's pre-processing in torch: list of (3, H, W) uint8 -> (B, 3, S, S) pixel values.

        Resize the shortest side to S (bicubic, antialiased), centre crop S x S, normalise.
        """
        out = []
        for image in images:
            if image.ndim != 3 or image.shape[0] != 3:
                raise ImageError(f"expected a (3, H, W) image, got {tuple(image.shape)}")
            x = image.to(self.device, torch.float32)[None]
            h, w = x.shape[-2:]
            scale = self.image_size / min(h, w)
            nh, nw = max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = (nh - self.image_size) // 2, (nw - self.image_size) // 2
            out.append(x[..., top : top + self.image_size, left : left + self.image_size])
        return self.normalize(torch.cat(out).clamp(0, 255))

    @torch.inference_mode()
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixel values -> (B, D) L2-normalised image embeddings."""
        out = self.model.vision_model(pixel_values=pixel_values.to(self.device, self.dtype))
        return F.normalize(self.model.visual_projection(out.pooler_output).float(), dim=-1)

    @torch.inference_mode()
    def encode_dense(
        self, pixel_values: torch.Tensor, with_global: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) pixel values -> (B, D, H/P, W/P) L2-normalised per-location embeddings.

        H and W must be multiples of the patch size; sizes other than S interpolate the position
        embeddings. With `with_global`, also return the (B, D) image embedding of the same pass.
        """
        h, w = pixel_values.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ImageError(
                f"encode_dense needs sides divisible by {self.patch_size}, got {h}x{w}"
            )
        vision = self.model.vision_model
        out = vision(
            pixel_values=pixel_values.to(self.device, self.dtype),
            output_hidden_states=True,
            interpolate_pos_encoding=(h, w) != (self.image_size, self.image_size),
        )
        last = vision.encoder.layers[-1]
        x = last.layer_norm1(out.hidden_states[-2][:, 1:])  # (B, hw, C) input of the last block
        x = last.self_attn.out_proj(last.self_attn.v_proj(x))  # self-attention to itself only
        x = self.model.visual_projection(vision.post_layernorm(x))  # (B, hw, D)
        dense = F.normalize(x.float(), dim=-1)
        dense = dense.transpose(1, 2).reshape(
            x.shape[0], -1, h // self.patch_size, w // self.patch_size
        )
        if not with_global:
            return dense
        return dense, F.normalize(self.model.visual_projection(out.pooler_output).float(), dim=-1)

    # ---- text ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """T strings -> (T, D) L2-normalised text embeddings (batched, truncated to the context)."""
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings, got one str")
        outs = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_text_length,
                return_tensors="pt",
            ).to(self.device)
            self.text_forwards += 1
            out = self.model.text_model(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
            outs.append(F.normalize(self.model.text_projection(out.pooler_output).float(), dim=-1))
        if not outs:
            return torch.empty(0, self.embed_dim, device=self.device)
        return torch.cat(outs)


def load_clip(name_or_path: str, device: str | torch.device = "cpu") -> ClipModel:
    """Load a CLIP by alias, hub id or local folder; see `ClipModel.from_pretrained`."""
    return ClipModel.from_pretrained(name_or_path, device=device)
