"""SAM over transformers' `SamModel`: embed an image once, then prompt it with batches of boxes.

For each box prompt the backend returns the mask at the original resolution, SAM's predicted IoU,
and a *position-aware token* (RegionSpot, ICLR 2024): the mask decoder's output mask token taken
after its two-way transformer (the default), or for the ablation the prompt encoder's box
embedding (mean of its two corner tokens) or the token after the hypernetwork MLP.

Pre-processing follows SAM: resize the longest side to the model's input side, normalise with
ImageNet mean and std (in 0-255 units), pad bottom/right; box prompts are scaled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ovdet.errors import FormatError
from ovdet.models.registry import load_weights, model_type_of
from ovdet.ops.boxes import check_boxes
from ovdet.ops.letterbox import Letterbox

SAM_ALIASES: dict[str, str] = {
    "sam-b": "facebook/sam-vit-base",
    "sam-l": "facebook/sam-vit-large",
    "sam-h": "facebook/sam-vit-huge",
}
SAM_MEAN = (123.675, 116.28, 103.53)
SAM_STD = (58.395, 57.12, 57.375)


def normalize_sam(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pixels in [0, 255] -> SAM's normalised float pixels."""
    mean = torch.tensor(SAM_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(SAM_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


TOKEN_SOURCES = ("transformer", "prompt", "mlp")


@dataclass
class SamImage:
    """An embedded image: (1, C, h, w) embeddings, resize scale, resized and original (H, W),
    and the features it was embedded from when a later step reads them too (Open-Vocabulary
    SAM's CLIP levels)."""

    embeddings: torch.Tensor
    scale: float
    resized: tuple[int, int]
    size: tuple[int, int]
    features: Any = None


@dataclass
class SamPrediction:
    """Per prompt: (N, H, W) bool masks, (N,) predicted IoU, (N, C) position-aware tokens,
    (N, h4, w4) low-resolution mask logits, and all three token variants by source name."""

    masks: torch.Tensor
    iou: torch.Tensor
    tokens: torch.Tensor
    logits: torch.Tensor
    variants: dict[str, torch.Tensor]


class SamBackend:
    """A frozen `SamModel`."""

    def __init__(self, model: Any, name: str = "sam") -> None:
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.image_size = int(model.config.vision_config.image_size)
        self.token_dim = int(model.config.mask_decoder_config.hidden_size)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str | torch.device = "cpu") -> SamBackend:
        """Load a SAM checkpoint by alias (`sam-b`, `sam-l`, `sam-h`), hub id, local folder or
        the bundled `shapes-sam`."""
        from transformers import SamModel

        from ovdet.models.bundled import resolve_bundled

        target = resolve_bundled(name_or_path)

        def load(target: str) -> SamBackend:
            kind = model_type_of(target)
            if kind != "sam":  # SamModel would load anything, filling the gaps with random weights
                raise FormatError(f"{name_or_path!r} is a {kind!r} checkpoint, not a SAM ('sam')")
            return cls(SamModel.from_pretrained(target), name=name_or_path)

        backend = load_weights(load, target, SAM_ALIASES, "SAM")
        backend.model.to(device)
        return backend

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, image: torch.Tensor) -> tuple[torch.Tensor, float, tuple[int, int]]:
        """(3, H, W) uint8 -> (1, 3, S, S) pixel values, scale, resized (h, w)."""
        box = Letterbox.fit(*image.shape[-2:], self.image_size)
        return box.image(image, "bilinear", normalize_sam, self.device), box.scale, box.resized

    @torch.inference_mode()
    def set_image(self, image: torch.Tensor) -> SamImage:
        """Run the image encoder once; prompts reuse the result."""
        pixels, scale, resized = self.preprocess(image)
        emb = self.model.get_image_embeddings(pixels)
        return SamImage(emb, scale, resized, (int(image.shape[-2]), int(image.shape[-1])))

    @torch.inference_mode()
    def predict_boxes(
        self, state: SamImage, xyxy: torch.Tensor, token: str = "transformer", batch_size: int = 64
    ) -> SamPrediction:
        """Prompt with (N, 4) xyxy boxes in original pixels; one mask per box."""
        if token not in TOKEN_SOURCES:
            raise ValueError(f"token must be one of {TOKEN_SOURCES}, got {token!r}")
        boxes = check_boxes(xyxy).to(self.device) * state.scale
        parts = [
            self._predict(state, chunk, token) for chunk in boxes.split(batch_size) if len(chunk)
        ]
        if not parts:
            h, w = state.size
            empty = torch.zeros(0, self.token_dim)
            return SamPrediction(
                torch.zeros(0, h, w, dtype=torch.bool),
                torch.zeros(0),
                empty,
                torch.zeros(0, 0, 0),
                {k: empty for k in TOKEN_SOURCES},
            )
        variants = {k: torch.cat([p.variants[k] for p in parts]) for k in TOKEN_SOURCES}
        return SamPrediction(
            *(
                torch.cat(p)
                for p in zip(*((q.masks, q.iou, q.tokens, q.logits) for q in parts), strict=True)
            ),
            variants,
        )

    def _predict(self, state: SamImage, boxes: torch.Tensor, token: str) -> SamPrediction:
        captured: dict[str, torch.Tensor] = {}
        decoder = self.model.mask_decoder
        hooks = [
            decoder.transformer.register_forward_hook(
                lambda m, i, o: captured.__setitem__("points", o[0])
            ),
            self.model.prompt_encoder.register_forward_hook(
                lambda m, i, o: captured.__setitem__("sparse", o[0])
            ),
        ]
        try:
            out = self.model(
                image_embeddings=state.embeddings, input_boxes=boxes[None], multimask_output=False
            )
        finally:
            for h in hooks:
                h.remove()
        mask_token = captured["points"][0, :, 1]  # (N, C): the single-mask output token
        variants = {
            "transformer": mask_token,
            "mlp": decoder.output_hypernetworks_mlps[0](mask_token),
            "prompt": captured["sparse"][0].mean(1),  # (N, C): mean of the box's corner tokens
        }
        logits = out.pred_masks[0, :, 0]  # (N, h4, w4)
        return SamPrediction(
            self.postprocess(logits, state),
            out.iou_scores[0, :, 0],
            variants[token],
            logits,
            variants,
        )

    @torch.inference_mode()
    def predict_points(
        self, state: SamImage, xy: torch.Tensor, multimask: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt with (N, 2) single positive points (original pixels) -> (N, K, h4, w4)
        low-resolution mask logits and (N, K) predicted IoU; K = 3 with `multimask`, else 1."""
        points = torch.as_tensor(xy, dtype=torch.float32).reshape(-1, 2).to(self.device)
        out = self.model(
            image_embeddings=state.embeddings,
            input_points=(points * state.scale)[None, :, None],
            input_labels=torch.ones(1, len(points), 1, dtype=torch.long, device=self.device),
            multimask_output=multimask,
        )
        return out.pred_masks[0], out.iou_scores[0]

    def point_masks(self, state: SamImage, xy: torch.Tensor) -> torch.Tensor:
        """(N, 2) single positive points -> (N, H, W) bool masks at the original resolution,
        each the best of SAM's three by predicted IoU."""
        logits, iou = self.predict_points(state, xy, multimask=True)
        return self.postprocess(logits[torch.arange(len(logits)), iou.argmax(1)], state)

    def postprocess(self, logits: torch.Tensor, state: SamImage) -> torch.Tensor:
        """(N, h4, w4) low-resolution logits -> (N, H, W) bool masks at the original resolution."""
        box = Letterbox(self.image_size, state.scale, state.resized, state.size)
        return (box.invert_map(logits[:, None])[:, 0] > 0).cpu()
