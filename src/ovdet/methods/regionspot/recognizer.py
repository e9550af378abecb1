"""Recognise regions with a trained RegionSpot: SAM tokens + CLIP map -> names, scores, masks.

One SAM image embedding and one CLIP pass per image, whatever the number of boxes; the boxes are
prompted to SAM in batches, and every box is scored against every class at once.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ovdet.errors import OvdetError
from ovdet.methods.regionspot.model import RegionSpot, RegionSpotConfig
from ovdet.models.bundled import checkpoint_folder
from ovdet.models.sam import SamBackend, SamImage
from ovdet.models.sam_everything import EverythingConfig
from ovdet.models.sam_everything import everything as sam_everything
from ovdet.models.vlm import VisionLanguageModel
from ovdet.ops.boxes import check_boxes
from ovdet.recognize.dense import DenseEmbedder
from ovdet.recognize.inputs import ImageInput, as_image, as_regions
from ovdet.types import Regions
from ovdet.vocab.parse import VocabularyInput


def mask_coverage(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, h, w) fraction of each cell of the letterboxed image's grid
    (the image padded bottom/right to a square, then divided into h x w cells) inside the mask."""
    n, hh, ww = masks.shape
    side = max(hh, ww)
    x = F.pad(masks.float(), (0, side - ww, 0, side - hh))
    return F.adaptive_avg_pool2d(x[:, None], grid)[:, 0] if n else torch.zeros(0, *grid)


class FeatureExtractor:
    """Frozen SAM + CLIP features of one image and its boxes (what the cache stores)."""

    def __init__(self, sam: SamBackend, clip: VisionLanguageModel, clip_size: int | None = None):
        self.sam, self.clip = sam, clip
        self.dense = DenseEmbedder(clip, clip_size)

    @torch.inference_mode()
    def __call__(
        self, image: torch.Tensor, xyxy: torch.Tensor, state: SamImage | None = None
    ) -> dict[str, torch.Tensor]:
        """(3, H, W) uint8 image, (N, 4) boxes -> tokens per variant, masks, CLIP map/global.
        `state`: the image's SAM embedding when the caller already has it."""
        pred = self.sam.predict_boxes(state or self.sam.set_image(image), xyxy)
        dense, global_, scale = self.dense.dense_map(image)
        out = {f"tok_{k}": v.float().cpu() for k, v in pred.variants.items()}
        return out | {
            "mask_cover": mask_coverage(pred.masks, tuple(dense.shape[-2:])).half(),
            "xyxy": xyxy.float().cpu(),
            "norm": torch.tensor(scale / self.dense.input_size),  # pixels -> letterbox [0, 1]
            "clip_map": dense[0].half().cpu(),
            "clip_global": global_[0].float().cpu(),
            "masks": pred.masks,
        }


def make_extractor(
    sam: str, clip: str, clip_size: int | None = None, device: str = "cpu"
) -> FeatureExtractor:
    """A `FeatureExtractor` with its SAM and CLIP loaded by name (what a Ray actor builds)."""
    from ovdet.models.loader import load_model

    return FeatureExtractor(
        SamBackend.from_pretrained(sam, device=device), load_model(clip, device=device), clip_size
    )


def load_regionspot(folder: str | os.PathLike) -> tuple[RegionSpot, dict[str, Any]]:
    """A trained module and its spec from a checkpoint folder (or `shapes-regionspot`)."""
    folder = checkpoint_folder(folder)
    spec_path = folder / "spec.json"
    if not spec_path.is_file() or not (folder / "model.safetensors").is_file():
        raise OvdetError(f"not a RegionSpot checkpoint (spec.json + model.safetensors): {folder}")
    spec = json.loads(spec_path.read_text())
    if spec.get("kind") != "regionspot":
        raise OvdetError(f"{folder} is a {spec.get('kind')!r} checkpoint, not 'regionspot'")
    model = RegionSpot(RegionSpotConfig(**spec["config"]))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model.eval().requires_grad_(False), spec


class RegionSpotRecognizer:
    """A trained RegionSpot with its frozen SAM and CLIP (loaded by the names in its spec)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        sam: SamBackend | None = None,
        clip: VisionLanguageModel | None = None,
        device: str | torch.device = "cpu",
        text_cache: Any = "default",
    ) -> None:
        from ovdet.models.loader import load_model
        from ovdet.models.registry import resolve_stored
        from ovdet.vocab.cache import resolve_cache
        from ovdet.vocab.embed import TextEmbedder

        self.folder = str(folder)  # as given: a folder or a bundled name
        self.model, self.spec = load_regionspot(folder)
        self.model.to(device)
        home = checkpoint_folder(folder)  # a relative model path may be recorded from there
        self.sam_name, self.clip_name = (
            resolve_stored(self.spec[k], home) for k in ("sam", "clip")
        )
        self.sam = sam or SamBackend.from_pretrained(self.sam_name, device=device)
        self.clip = clip or load_model(self.clip_name, device=device)
        self.features = FeatureExtractor(self.sam, self.clip, self.spec["clip_size"])
        cache = resolve_cache(text_cache)
        # the prompts the head was trained with; cached on disk unless text_cache is None
        self.text = TextEmbedder(self.clip, self.spec["templates"], cache)
        self.base_names = list(self.spec["base_names"])

    def text_embeddings(self, vocab: VocabularyInput) -> torch.Tensor:
        """(C, D) embeddings of a vocabulary (or an inline list, a file or names: the embedder
        parses them) with the checkpoint's CLIP and templates (cached)."""
        return self.text.embed(vocab)

    def recognize_regions(
        self, image: ImageInput, regions: Regions | torch.Tensor, vocab: VocabularyInput
    ) -> Regions:
        """The `Recognizer` protocol: name `regions` of `image` from `vocab` (with SAM masks);
        the image may be a path, PIL image or array, the regions (N, 4) xyxy boxes, the
        vocabulary an inline list, a file or a list of names."""
        image = as_image(image)
        regions = as_regions(regions, image)
        return self.recognize(image, regions.xyxy, self.text_embeddings(vocab))

    @torch.inference_mode()
    def detect(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        proposals: torch.Tensor | None = None,
        proposal_scores: torch.Tensor | None = None,
        everything: EverythingConfig | None = None,
        labels_per_box: int = 1,
        nms_threshold: float = 0.5,
    ) -> Regions:
        """Name proposals: (N, 4) boxes with optional (N,) scores, or SAM's everything mode
        (scores = SAM's predicted IoU) when `proposals` is None. Each box becomes a detection for
        each of its top `labels_per_box` classes, scored sqrt(p_class * proposal score) when the
        proposals have scores; same-class duplicates are removed by NMS."""
        state = None
        if proposals is None:
            state = self.sam.set_image(image)
            found = sam_everything(self.sam, state, everything)
            proposals, proposal_scores = found.xyxy, found.scores
        regions = self.recognize(image, proposals, text, state)
        if len(regions) == 0:
            return regions
        regions = regions.topk_labels(labels_per_box)
        if proposal_scores is not None:
            prior = proposal_scores.float().clamp(0, 1)[regions.data["row"]]
            regions = regions.replace(scores=(regions.scores * prior).sqrt())
        return regions.with_nms(nms_threshold)

    @torch.inference_mode()
    def recognize(
        self,
        image: torch.Tensor,
        xyxy: torch.Tensor,
        text: torch.Tensor,
        state: SamImage | None = None,
    ) -> Regions:
        """(3, H, W) uint8 image, (N, 4) boxes, (C, D) text -> Regions with labels, scores (sigmoid
        of the best class), masks, embeddings and data["class_scores"] (N, C)."""
        boxes = check_boxes(xyxy).float()
        size = (int(image.shape[-2]), int(image.shape[-1]))
        if len(boxes) == 0:
            return Regions(
                boxes,
                size,
                scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long),
                masks=torch.zeros(0, *size, dtype=torch.bool),
                embeddings=torch.zeros(0, text.shape[-1]),
                data={"class_scores": torch.zeros(0, len(text))},
            )
        emb, f = self.embed(image, boxes, state)
        device = emb.device
        scores = self.model.logits(emb, text.to(device)).sigmoid().cpu()
        best = scores.max(1)
        return Regions(
            boxes,
            size,
            scores=best[0],
            labels=best[1],
            masks=f["masks"],
            embeddings=emb.cpu(),
            data={"class_scores": scores},
        )

    @torch.inference_mode()
    def embed(
        self, image: torch.Tensor, xyxy: torch.Tensor, state: SamImage | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(3, H, W) uint8 image, (N, 4) boxes -> (N, D) unit region embeddings in the space of
        the checkpoint's CLIP text embeddings (on the module's device), and the frozen features
        (masks included) they came from."""
        f = self.features(image, check_boxes(xyxy).float(), state)
        device = next(self.model.parameters()).device
        emb = self.model(
            f[f"tok_{self.spec['token']}"][None].to(device),
            (f["xyxy"] * f["norm"])[None].to(device),
            f["clip_map"].float()[None].to(device),
            f["clip_global"][None].to(device),
            f["mask_cover"].float()[None].to(device),
        )[0]
        return emb, f


class RegionSpotDetector:
    """RegionSpot behind the `Detector` protocol: each proposal named by the trained module.

    Proposals come from SAM's everything mode, unless `detect` is given boxes (another
    detector's results, ground-truth boxes).

    Args:
        spot: a loaded `RegionSpotRecognizer`.
        everything: the everything mode's settings.
        labels_per_box: detections per proposal (its best classes).
    """

    def __init__(
        self,
        spot: RegionSpotRecognizer,
        everything: EverythingConfig | None = None,
        labels_per_box: int = 1,
    ) -> None:
        self.spot, self.everything, self.labels_per_box = spot, everything, labels_per_box
        self.base_names = spot.base_names

    def detect(
        self, image: ImageInput, vocab: VocabularyInput, proposals: torch.Tensor | None = None
    ) -> Regions:
        """(3, H, W) uint8 image -> labelled Regions with masks; `proposals`: (N, 4) xyxy boxes
        to name instead of SAM's everything-mode proposals. Inputs as `recognize_regions`'."""
        return self.spot.detect(
            as_image(image),
            self.spot.text_embeddings(vocab),
            proposals,
            everything=self.everything,
            labels_per_box=self.labels_per_box,
        )
