"""ViLD at inference: load a trained checkpoint and detect any vocabulary in an image.

`ViLDDetector` is the `ovdet.api.Detector` of a ViLD checkpoint: it holds the detector, its spec
and its CLIP (for the text embeddings, cached on disk) and maps boxes back to image pixels.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors.torch import load_file

from ovdet.data.coco import letterbox
from ovdet.detect.build import build_backbone
from ovdet.detect.hf_backbone import HFBackbone
from ovdet.detect.rpn import RPNConfig
from ovdet.errors import WeightsNotFoundError
from ovdet.methods.vild.model import ViLD, ViLDConfig
from ovdet.models.bundled import checkpoint_folder
from ovdet.ops.conv import channels_last
from ovdet.ops.masks import paste_masks
from ovdet.recognize.inputs import ImageInput, as_image, as_regions
from ovdet.types import Regions
from ovdet.vocab.parse import VocabularyInput, as_vocabulary


def build_model(
    spec: dict[str, Any], base_text: torch.Tensor, backbone: torch.nn.Module | None = None
) -> ViLD:
    """The ViLD a spec describes, on `backbone` (default: the spec's, randomly initialised)."""
    if backbone is None:
        backbone = build_backbone(spec)
    rpn = spec["rpn"] | {
        "sizes": tuple(spec["rpn"]["sizes"]),
        "ratios": tuple(spec["rpn"]["ratios"]),
    }
    return ViLD(backbone, base_text, ViLDConfig(**spec["vild"]), RPNConfig(**rpn))


def load_detector(
    folder: str | os.PathLike, device: str = "cpu", for_inference: bool = False
) -> tuple[ViLD, dict[str, Any]]:
    """A trained ViLD and its spec from a checkpoint folder or a bundled name ("shapes-vild").

    `for_inference` (`ViLDDetector`) puts a transformers backbone's weights in
    channels-last memory, where oneDNN's and cuDNN's convolutions are faster (ResNet-50 + FPN at
    1024 px on 2 CPU cores: backbone and FPN 2.2 s -> 1.7 s, the whole image 3.6 s -> 3.1 s),
    and fuses a ResNet's frozen BatchNorms into its convolutions with in-place ReLUs
    (`HFBackbone.fuse_for_inference`: backbone 1.88 -> 1.34 s); `detect_images` feeds such a
    backbone channels-last pixels. The shapes world's backbone runs channels-last already.
    Trainers keep the default: they train and save the model as it is.
    """
    folder = checkpoint_folder(folder)

    if not (folder / "spec.json").is_file() or not (folder / "model.safetensors").is_file():
        raise WeightsNotFoundError(
            f"{folder} is not a ViLD checkpoint (needs spec.json and model.safetensors)"
        )
    spec = json.loads((folder / "spec.json").read_text())
    state = load_file(folder / "model.safetensors")
    model = build_model(spec, torch.zeros(len(spec["base_names"]), spec["vild"]["embed_dim"]))
    # weights may be stored in float16 to save space (the base text buffer is not saved);
    # `aux.` holds training-only modules (CoDet's Phi), kept for exact resume
    model.load_state_dict(
        {
            k: v.float() if v.is_floating_point() else v
            for k, v in state.items()
            if not k.startswith("aux.")
        }
    )
    model = model.to(device).eval()
    if for_inference:
        prepare_for_inference(model)
    return model, spec


def prepare_for_inference(model: ViLD) -> None:
    """A transformers backbone fused (`HFBackbone.fuse_for_inference`) and in channels-last
    memory, in place; the shapes world's backbone is left as it is (channels-last already)."""
    bodies = [m for m in model.backbone.modules() if isinstance(m, HFBackbone)]
    for body in bodies:
        body.fuse_for_inference()
    if bodies:
        model.backbone.to(memory_format=torch.channels_last)


@torch.no_grad()
def detect_image(
    model: ViLD,
    spec: dict[str, Any],
    image: torch.Tensor,
    text: torch.Tensor,
    novel: torch.Tensor | None = None,
) -> Regions:
    """Detect in one (3, H, W) uint8 image; boxes come back in the image's own pixels."""
    (regions,) = detect_images(model, spec, [image], text, novel)
    return regions


@torch.no_grad()
def detect_images(
    model: ViLD,
    spec: dict[str, Any],
    images: list[torch.Tensor],
    text: torch.Tensor,
    novel: torch.Tensor | None = None,
    precision: str = "fp32",
) -> list[Regions]:
    """Detect in a batch of (3, H_i, W_i) uint8 images of any sizes: each is letterboxed to the
    checkpoint's square side, so one backbone pass takes them all; boxes come back in each
    image's own pixels. `precision` "bf16" (CPU or CUDA) or "fp16" (CUDA) runs the model under
    autocast; the results come back in float32."""
    from ovdet.train.precision import Precision

    device = next(model.parameters()).device
    short = spec.get("short_side", 0)
    fitted = [letterbox(image, spec["side"], short=short) for image in images]
    pixels = torch.cat([p for p, _ in fitted]).to(device)
    if spec.get("backbone"):  # a transformers backbone: its convolutions prefer channels-last
        pixels = channels_last(pixels)
    with Precision(precision, device.type).autocast():
        found = model.detect(pixels, [box.resized for _, box in fitted], text, novel)
    found = [regions.float() for regions in found]
    out = []
    for (_, box), regions in zip(fitted, found, strict=True):
        xyxy, data = box.invert_boxes(regions.xyxy), dict(regions.data)
        probs = data.pop("mask_probs", None)  # a mask head's grids over the boxes
        masks = paste_masks(probs, xyxy, box.original) if probs is not None else None
        out.append(
            Regions(
                xyxy, box.original, regions.scores, regions.labels, masks, regions.embeddings, data
            )
        )
    return out


class ViLDDetector:
    """A trained ViLD behind the `Detector` protocol: `detect(image, vocabulary) -> Regions`.

    Args:
        name_or_path: checkpoint folder or bundled name (`shapes-vild`, `shapes-vild-text`).
        device: torch device.
        templates: prompt set for the vocabulary (default: the one the checkpoint trained with).
        text_cache: a `TextEmbeddingCache`, or None for no disk cache.
        precision: "fp32", "bf16" (autocast on the CPU or CUDA; about 2x faster on a CPU with
            AMX) or "fp16" (CUDA).
        compile: run the backbone through `torch.compile` (inductor; it needs a C++ compiler on
            a CPU, Triton on CUDA): the first image pays the compilation (about 30 s for a
            ResNet-50 + FPN on 2 CPU cores), later ones run faster (that backbone at 1024 px:
            1.34 -> 1.15 s here, fused either way; the same outputs); worth it for a dataset,
            not one photo.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        device: str | torch.device = "cpu",
        templates: str | None = None,
        text_cache: Any = "default",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        from ovdet.models.loader import load_model
        from ovdet.train.precision import Precision
        from ovdet.vocab.cache import resolve_cache
        from ovdet.vocab.embed import TextEmbedder

        Precision(precision, torch.device(device).type)  # fp16 on a CPU: refused now, in one line
        self.precision = precision
        self.model, self.spec = load_detector(name_or_path, str(device), for_inference=True)
        if compile:  # the backbone through torch.compile (inductor), compiled at its first call
            self.model.backbone.compile()
        self.clip = load_model(self.spec["clip"], device=device)
        cache = resolve_cache(text_cache)
        self.text = TextEmbedder(self.clip, templates or self.spec["templates"], cache)
        self.base_names = list(self.spec["base_names"])

    def detect(self, image: ImageInput, vocab: VocabularyInput) -> Regions:
        """(3, H, W) uint8 image (or a path, PIL image or array) -> labelled Regions (labels
        index `vocab`: a Vocabulary, an inline list such as "cat, dog", a file or a list of
        names) in image pixels."""
        (regions,) = self.detect_batch([image], vocab)
        return regions

    @torch.no_grad()
    def recognize_regions(
        self, image: ImageInput, regions: Regions | torch.Tensor, vocab: VocabularyInput
    ) -> Regions:
        """The `Recognizer` protocol: name given boxes with the checkpoint's RoI heads (no RPN,
        boxes kept as given) -> labels, scores (the best class's probability), embeddings and
        data["class_scores"] (N, C). Inputs as `detect`'s; regions may be (N, 4) xyxy boxes."""
        image, vocab = as_image(image), as_vocabulary(vocab)
        regions = as_regions(regions, image)
        text = self.text.embed(vocab)
        if len(regions) == 0:
            return regions.replace(
                scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long),
                data={"class_scores": torch.zeros(0, len(text))},
            )
        pixels, box = letterbox(image, self.spec["side"], short=self.spec.get("short_side", 0))
        device = next(self.model.parameters()).device
        features = self.model.backbone(pixels.to(device))
        inside = box.boxes(regions.xyxy.float()).to(device)
        probs, emb, _ = self.model.score_regions(
            features, [inside], text, vocab.novel_mask(self.base_names)
        )
        best = probs.max(1)
        return Regions(
            regions.xyxy,
            regions.image_size,
            scores=best.values.cpu(),
            labels=best.indices.cpu(),
            embeddings=emb.cpu(),
            data={"class_scores": probs.cpu()},
        )

    def detect_batch(self, images: list[ImageInput], vocab: VocabularyInput) -> list[Regions]:
        """Several (3, H, W) uint8 images in one backbone pass -> one Regions per image."""
        images, vocab = [as_image(im) for im in images], as_vocabulary(vocab)
        text = self.text.embed(vocab)
        novel = vocab.novel_mask(self.base_names)
        return detect_images(self.model, self.spec, images, text, novel, self.precision)
