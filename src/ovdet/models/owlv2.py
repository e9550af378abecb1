"""OWLv2 (Minderer et al., 2023) through transformers' `Owlv2ForObjectDetection`: a multi-modal
ViT detector, used as RKD's pseudo-labeler (the role MAVL plays in the paper).

- `objectness(image)`: class-agnostic boxes scored by OWLv2's objectness head.
- `query(image, texts)`: per text query, every patch's box and its query probability.

Pre-processing is OWLv2's, in torch (transformers' fast processor needs torchvision): the image is
scaled to [0, 1], padded at the bottom and right to a square with 0.0 (OWLv2's value; OWL-ViT v1
padded with grey 0.5, which costs LVIS AP), blurred by a Gaussian of sigma (factor - 1) / 2 per
axis and resized bilinearly (scikit-image's anti-aliased resize, which OWLv2's code and
transformers' `Owlv2ImageProcessor` use), clipped to the input's range, and normalised with the
checkpoint's mean and std. Predicted boxes are (cx, cy, w, h)
relative to that padded square, so they map back to image pixels by the longer side alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ovdet.models.clip import OPENAI_MEAN, OPENAI_STD
from ovdet.models.registry import load_weights
from ovdet.ops.boxes import clip_boxes

OWL_ALIASES = {
    "owlv2-base": "google/owlv2-base-patch16-ensemble",
    "owlv2-large": "google/owlv2-large-patch14-ensemble",
}


def resize_like_skimage(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, side, side) as scikit-image's `resize(anti_aliasing=True)`: a
    Gaussian blur of sigma max(0, (factor - 1) / 2) per axis (truncated at 4 sigma, mirrored at
    the edges), linear sampling at pixel centres (mirrored past the edges), clipped to the
    input's range."""
    h, w = x.shape[-2:]
    for axis, n in ((-2, h), (-1, w)):
        sigma = max(0.0, (n / side - 1) / 2)
        if sigma > 0:
            x = _gaussian_1d(x, sigma, axis)
    low, high = float(x.min()), float(x.max())
    out = _linear_1d(_linear_1d(x, side, -2), side, -1)
    return out.clamp(low, high)


def _linear_1d(x: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Linear interpolation along `axis` to `size` samples at pixel centres (scipy's zoom with
    grid_mode=True), coordinates past an edge mirrored back inside."""
    n = x.shape[axis]
    c = (torch.arange(size, dtype=torch.float64) + 0.5) * (n / size) - 0.5
    if n > 1:
        c = c.abs()
        c = torch.where(c > n - 1, 2 * (n - 1) - c, c)
    else:
        c = torch.zeros_like(c)
    i0 = c.floor().long().clamp(0, n - 1)
    i1 = (i0 + 1).clamp(max=n - 1)
    shape = [1] * x.dim()
    shape[axis] = size
    t = (c - i0).to(x.dtype).view(shape)
    return x.index_select(axis, i0) * (1 - t) + x.index_select(axis, i1) * t


def _gaussian_1d(x: torch.Tensor, sigma: float, axis: int) -> torch.Tensor:
    """A Gaussian along `axis` (-2 or -1): scipy's kernel (radius int(4 sigma + 0.5)) with
    mirrored edges (scipy's "mirror": d c b | a b c d | c b a, repeated past a short side)."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c = x.shape[axis], x.shape[1]
    period = max(1, 2 * (n - 1))
    index = torch.arange(-radius, n + radius) % period
    index = torch.where(index >= n, period - index, index)
    x = x.index_select(axis, index)
    shape = (1, 1, 1, -1) if axis == -1 else (1, 1, -1, 1)
    weight = kernel.view(shape).expand(c, 1, *kernel.view(shape).shape[2:])
    return F.conv2d(x, weight, groups=c)


class Owlv2:
    """A loaded OWLv2 and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, mean: Any, std: Any, name: str) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.side = int(model.config.vision_config.image_size)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str | torch.device = "cpu") -> Owlv2:
        """Load by alias (`owlv2-base`), hub id or folder; a missing one is a one-line error."""

        def load(target: str) -> Owlv2:
            from transformers import AutoTokenizer, Owlv2ForObjectDetection
            from transformers.utils import cached_file

            model = Owlv2ForObjectDetection.from_pretrained(target).to(device)
            tokenizer = AutoTokenizer.from_pretrained(target)
            mean, std = OPENAI_MEAN, OPENAI_STD
            path = cached_file(
                target, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
            )
            if path is not None:
                config = json.loads(Path(path).read_text())
                mean, std = config.get("image_mean", mean), config.get("image_std", std)
            return cls(model, tokenizer, mean, std, name_or_path)

        return load_weights(load, name_or_path, OWL_ALIASES, "OWLv2")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (1, 3, S, S): padded to a square with 0.0, resized with OWLv2's
        anti-aliasing, normalised."""
        _, h, w = image.shape
        side = max(h, w)
        square = torch.zeros(3, side, side)
        square[:, :h, :w] = image.float() / 255
        x = resize_like_skimage(square[None], self.side)
        return ((x[0] - self.mean) / self.std)[None].to(self.device)

    def _boxes(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(P, 4) relative (cx, cy, w, h) on the padded square -> (P, 4) xyxy image pixels."""
        cx, cy, bw, bh = (pred.float().cpu() * max(size)).unbind(-1)
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        return clip_boxes(xyxy, size)

    @torch.inference_mode()
    def _forward(self, image: torch.Tensor, texts: list[str]) -> Any:
        tokens = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt"
        )
        return self.model(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
            pixel_values=self.preprocess(image),
        )

    def objectness(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 4) xyxy boxes (image pixels) of every patch and (P,) objectness probabilities."""
        out = self._forward(image, ["object"])
        size = (int(image.shape[1]), int(image.shape[2]))
        return self._boxes(out.pred_boxes[0], size), out.objectness_logits[
            0
        ].float().sigmoid().cpu()

    def query(self, image: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 4) xyxy boxes of every patch and (P, T) probabilities of each text query."""
        out = self._forward(image, texts)
        size = (int(image.shape[1]), int(image.shape[2]))
        return self._boxes(out.pred_boxes[0], size), out.logits[0].float().sigmoid().cpu()
