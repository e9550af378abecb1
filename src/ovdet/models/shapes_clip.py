"""A tiny CLIP for the shapes world: a convolutional image tower and a small transformer text tower.

It is a transformers `PreTrainedModel` of ovdet's own (model type `ovdet-shapes-clip`), saved and
loaded with `save_pretrained` / `from_pretrained` like any hub checkpoint, with a word-level
`PreTrainedTokenizerFast` beside it. Why not transformers' `CLIPModel`: on this data its ViT
towers stayed near chance in a few hundred steps where a small conv + BatchNorm tower learned
fast, and a conv tower gives a dense map by construction.

Image tower: four conv blocks (3x3 conv, BatchNorm, ReLU; 2x2 max-pool between blocks, the last
two blocks doubled) to stride 8, then a 1x1 projection to the joint width D: the (B, D, S/8, S/8)
projected map *is* the dense embedding, and its spatial mean is the image embedding (the
projection is linear, so mean-then-project equals project-then-mean).
Text tower: token + position embeddings, a pre-norm transformer encoder, and pooling at the
first EOS token (an explicit position, not transformers' legacy `argmax(input_ids)` pooling).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.conv import channels_last, run_folded

MODEL_TYPE = "ovdet-shapes-clip"
SPECIAL_TOKENS = {"[PAD]": 0, "[EOS]": 1, "[BOS]": 2, "[UNK]": 3}
SHAPES_MEAN = (0.5, 0.5, 0.5)
SHAPES_STD = (0.25, 0.25, 0.25)


class ShapesClipConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 160,
        text_width: int = 128,
        text_layers: int = 2,
        text_heads: int = 4,
        max_text_length: int = 24,
        channels: Sequence[int] = (32, 64, 96, 128),
        image_size: int = 64,
        dense_size: int = 128,  # whole scenes are 128 px: the dense map's default input side
        embed_dim: int = 128,
        logit_scale_init: float = math.log(1 / 0.07),
        image_mean: Sequence[float] = SHAPES_MEAN,
        image_std: Sequence[float] = SHAPES_STD,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pad_token_id", SPECIAL_TOKENS["[PAD]"])
        kwargs.setdefault("eos_token_id", SPECIAL_TOKENS["[EOS]"])
        kwargs.setdefault("bos_token_id", SPECIAL_TOKENS["[BOS]"])
        super().__init__(**kwargs)
        self.vocab_size, self.text_width = vocab_size, text_width
        self.text_layers, self.text_heads = text_layers, text_heads
        self.max_text_length = max_text_length
        self.channels, self.image_size, self.embed_dim = list(channels), image_size, embed_dim
        self.dense_size = dense_size
        self.logit_scale_init = logit_scale_init
        self.image_mean, self.image_std = list(image_mean), list(image_std)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ConvTower(nn.Module):
    """(B, 3, H, W) -> (B, D, H/8, W/8) projected feature map."""

    def __init__(self, channels: Sequence[int], embed_dim: int) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.blocks = nn.Sequential(
            _conv(3, c0),
            nn.MaxPool2d(2),
            _conv(c0, c1),
            nn.MaxPool2d(2),
            _conv(c1, c2),
            _conv(c2, c2),
            nn.MaxPool2d(2),
            _conv(c2, c3),
            _conv(c3, c3),
        )
        self.proj = nn.Conv2d(c3, embed_dim, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(run_folded(self.blocks, channels_last(pixel_values))).contiguous()


class TextTower(nn.Module):
    """(T, L) token ids -> (T, D) features pooled at the first EOS token."""

    def __init__(self, config: ShapesClipConfig) -> None:
        super().__init__()
        w = config.text_width
        self.token_embedding = nn.Embedding(config.vocab_size, w)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_text_length, w))
        layer = nn.TransformerEncoderLayer(
            w,
            config.text_heads,
            4 * w,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        self.encoder = nn.TransformerEncoder(layer, config.text_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(w)
        self.proj = nn.Linear(w, config.embed_dim, bias=False)
        self.eos_token_id = config.eos_token_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        if n > self.position_embedding.shape[0]:
            raise ValueError(
                f"text of {n} tokens exceeds the context of {self.position_embedding.shape[0]}"
            )
        x = self.token_embedding(input_ids) + self.position_embedding[:n]
        x = self.final_norm(self.encoder(x, src_key_padding_mask=attention_mask == 0))
        is_eos = input_ids == self.eos_token_id
        # first EOS; a text cut before its EOS pools at its last real token
        last = attention_mask.sum(1) - 1
        pos = torch.where(is_eos.any(1), is_eos.int().argmax(1), last)
        return self.proj(x[torch.arange(len(x), device=x.device), pos])


class ShapesClipModel(PreTrainedModel):
    config: ShapesClipConfig  # transformers 5 reads the config class from this annotation
    config_class = ShapesClipConfig
    base_model_prefix = "shapes_clip"
    main_input_name = "pixel_values"

    def __init__(self, config: ShapesClipConfig) -> None:
        super().__init__(config)
        self.vision = ConvTower(config.channels, config.embed_dim)
        self.text = TextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, TextTower):
            nn.init.normal_(module.position_embedding, std=0.01)
            nn.init.normal_(module.token_embedding.weight, std=0.02)

    def dense_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D, H/8, W/8), not normalised."""
        return self.vision(pixel_values)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D): the spatial mean of the dense map."""
        return self.vision(pixel_values).mean((2, 3))

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids, attention_mask)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-to-text logits (B, T) and text-to-image logits (T, B)."""
        img = F.normalize(self.image_features(pixel_values), dim=-1)
        txt = F.normalize(self.text_features(input_ids, attention_mask), dim=-1)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * img @ txt.t()
        return logits, logits.t()


class ShapesClip(VisionLanguageModel):
    """`ShapesClipModel` behind the `VisionLanguageModel` interface."""

    def __init__(self, model: ShapesClipModel, tokenizer: Any, name: str = "shapes-clip") -> None:
        c = model.config
        super().__init__(
            model,
            tokenizer,
            image_size=c.image_size,
            patch_size=8,
            embed_dim=c.embed_dim,
            max_text_length=c.max_text_length,
            mean=c.image_mean,
            std=c.image_std,
            name=name,
            dense_size=getattr(c, "dense_size", None),
        )

    @classmethod
    def from_target(cls, target: str, name: str, dtype: torch.dtype | None = None) -> ShapesClip:
        """Load from a resolved folder or hub id."""
        from transformers import PreTrainedTokenizerFast

        model = ShapesClipModel.from_pretrained(target, dtype=dtype or torch.float32)
        return cls(model, PreTrainedTokenizerFast.from_pretrained(target), name=name)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.clamp(max=math.log(100)).exp())

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.text_features(input_ids, attention_mask)

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixel_values)

    def _dense_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dense = self.model.dense_features(pixel_values)
        return dense, dense.mean((2, 3))

    def _fingerprint_tensors(self) -> Iterable[torch.Tensor]:
        yield self.model.text.proj.weight
        yield self.model.text.token_embedding.weight
