"""OWLv2 (Minderer et al., 2023) through transformers' `Owlv2ForObjectDetection`: a multi-modal
ViT detector, used as RKD's pseudo-labeler (the role MAVL plays in the paper).

- `objectness(image)`: class-agnostic boxes scored by OWLv2's objectness head.
- `query(image, texts)`: per text query, every patch's box and its query probability.

Pre-processing is OWLv2's, in torch (transformers' fast processor needs torchvision): the image is
padded at the bottom and right to a square with grey 0.5, resized to the model's side with
antialiasing and normalised with the checkpoint's mean and std. Predicted boxes are (cx, cy, w, h)
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
        """(3, H, W) uint8 -> (1, 3, S, S): padded to a grey square, resized, normalised."""
        _, h, w = image.shape
        side = max(h, w)
        square = torch.full((3, side, side), 0.5)
        square[:, :h, :w] = image.float() / 255
        x = F.interpolate(square[None], (self.side, self.side), mode="bilinear", antialias=True)
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
