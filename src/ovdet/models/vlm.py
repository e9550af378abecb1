"""The interface every vision-language backend offers, and the parts they share.

A backend wraps one transformers model class. Subclasses implement three feature functions
(`_text_features`, `_image_features`, `_dense_features`); this base does the rest: batched torch
pre-processing, L2 normalisation, text batching and forward counting, device moves, and a
fingerprint of the text tower that keys the text-embedding cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from ovdet.errors import ImageError
from ovdet.ops.letterbox import check_aspect


class VisionLanguageModel:
    """A frozen dual encoder (CLIP-like) with batched torch pre-processing.

    Attributes:
        embed_dim: D, the width of the joint image-text space.
        image_size: S, the side of the square input the image tower was trained on.
        dense_size: the default input side of the one-pass dense map (`DenseEmbedder`): S for
            CLIP; a model trained on small crops may ask for more (shapes-clip: 128).
        patch_size: P, the stride of `encode_dense`: an (S, S) input gives (S/P, S/P) locations.
        text_forwards: number of text-tower forward passes run so far (the cache test counts them).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_size: int,
        patch_size: int,
        embed_dim: int,
        max_text_length: int,
        mean: Sequence[float],
        std: Sequence[float],
        name: str,
        dense_size: int | None = None,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.dense_size = int(dense_size or image_size)
        self.tokenizer = tokenizer
        self.name = name
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.embed_dim, self.max_text_length = int(embed_dim), int(max_text_length)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.text_forwards = 0

    # ---- what a backend implements -------------------------------------------------------------

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(T, L) tokens -> (T, D) text features (not normalised)."""
        raise NotImplementedError

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixel values -> (B, D) image features (not normalised)."""
        raise NotImplementedError

    def _dense_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> (B, D, H/P, W/P) per-location and (B, D) global features."""
        raise NotImplementedError

    def _fingerprint_tensors(self) -> Iterable[torch.Tensor]:
        """Tensors whose values identify the text tower."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> float:
        """The learned inverse temperature, exp(logit_scale)."""
        return float(self.model.logit_scale.exp())

    # ---- shared -------------------------------------------------------------------------------

    def to(self, device: str | torch.device) -> VisionLanguageModel:
        """Move the model to `device` (in place); returns self."""
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @cached_property
    def fingerprint(self) -> str:
        """A short hash identifying the text tower's weights (keys the text-embedding cache)."""
        h = hashlib.sha256(type(self.model).__name__.encode())
        h.update(self.model.config.to_json_string().encode())
        for tensor in self._fingerprint_tensors():
            h.update(tensor.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float RGB in [0, 255] -> normalised pixel values of the same shape."""
        return ((images.to(self.device) / 255.0 - self.mean) / self.std).to(self.dtype)

    def preprocess(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """CLIP's pre-processing in torch: list of (3, H, W) uint8 -> (B, 3, S, S) pixel values.

        Resize the shortest side to S (bicubic, antialiased), centre crop S x S, normalise. The
        long side is `int(S * long / short)`, truncated as `CLIPImageProcessor` and torchvision's
        Resize do (rounding shifts the crop by a column on e.g. 640x480 at 224). Images whose
        sides differ by more than `MAX_ASPECT` are refused: the shortest-side resize of a 1x65500
        strip would need gigabytes.
        """
        out = []
        for image in images:
            if image.ndim != 3 or image.shape[0] != 3:
                raise ImageError(f"expected a (3, H, W) image, got {tuple(image.shape)}")
            h, w = image.shape[-2:]
            check_aspect(h, w)
            x = image.to(self.device, torch.float32)[None]
            short, long = min(h, w), max(h, w)
            new_long = max(self.image_size, int(self.image_size * long / short))
            nh, nw = (self.image_size, new_long) if h <= w else (new_long, self.image_size)
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = (nh - self.image_size) // 2, (nw - self.image_size) // 2
            out.append(x[..., top : top + self.image_size, left : left + self.image_size])
        return self.normalize(torch.cat(out).clamp(0, 255))

    @torch.inference_mode()
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixel values -> (B, D) L2-normalised image embeddings."""
        features = self._image_features(pixel_values.to(self.device, self.dtype))
        return F.normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def encode_dense(
        self, pixel_values: torch.Tensor, with_global: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) pixel values -> (B, D, H/P, W/P) L2-normalised per-location embeddings.

        H and W must be multiples of the patch size P. With `with_global`, also return the (B, D)
        image embedding computed by the same pass.
        """
        h, w = pixel_values.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ImageError(
                f"encode_dense needs sides divisible by {self.patch_size}, got {h}x{w}"
            )
        dense, global_ = self._dense_features(pixel_values.to(self.device, self.dtype))
        dense = F.normalize(dense.float(), dim=1)
        if not with_global:
            return dense
        return dense, F.normalize(global_.float(), dim=-1)

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
            features = self._text_features(tokens["input_ids"], tokens["attention_mask"])
            outs.append(F.normalize(features.float(), dim=-1))
        if not outs:
            return torch.empty(0, self.embed_dim, device=self.device)
        return torch.cat(outs)
