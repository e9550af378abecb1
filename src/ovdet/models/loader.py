"""One front door for vision-language models: alias, hub id, local folder or bundled model ->
the backend its `config.json` names (transformers CLIP or ovdet's shapes-world CLIP)."""

from __future__ import annotations

import torch

from ovdet.errors import FormatError
from ovdet.models.bundled import resolve_bundled
from ovdet.models.registry import CLIP_ALIASES, load_weights, model_type_of
from ovdet.models.vlm import VisionLanguageModel


def backends() -> dict[str, type]:
    """transformers `model_type` -> the ovdet backend class (imported when first needed)."""
    from ovdet.models.clip import ClipModel
    from ovdet.models.shapes_clip import MODEL_TYPE, ShapesClip

    return {"clip": ClipModel, MODEL_TYPE: ShapesClip}


def load_model(
    name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> VisionLanguageModel:
    """Load any supported vision-language model by alias, hub id, folder or bundled name."""
    target = resolve_bundled(name_or_path)

    def load(resolved: str) -> VisionLanguageModel:
        model_type = model_type_of(resolved)
        known = backends()
        if model_type not in known:
            raise FormatError(
                f"{name_or_path!r} is a {model_type!r} model; supported: {sorted(known)}"
            )
        return known[model_type].from_target(resolved, name_or_path, dtype)

    aliases = {**CLIP_ALIASES}
    return load_weights(load, target, aliases, "model").to(device)
