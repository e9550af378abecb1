"""One front door for vision-language models: alias, hub id, local folder or bundled model ->
the backend its `config.json` names (transformers CLIP or ovdet's shapes-world CLIP)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from ovdet.errors import FormatError, WeightsNotFoundError
from ovdet.models.registry import CLIP_ALIASES, load_weights, model_type_of
from ovdet.models.vlm import VisionLanguageModel

# Models that ship inside the package (folders under ovdet/resources), with how to rebuild them.
BUNDLED: dict[str, tuple[str, str]] = {
    "shapes-clip": (
        "shapes-clip",
        "ovdet shapes generate --out data/shapes && ovdet shapes train-clip",
    ),
    "shapes-sam": ("shapes-sam", "ovdet shapes train-sam"),
}


def backends() -> dict[str, type]:
    """transformers `model_type` -> the ovdet backend class (imported when first needed)."""
    from ovdet.models.clip import ClipModel
    from ovdet.models.shapes_clip import MODEL_TYPE, ShapesClip

    return {"clip": ClipModel, MODEL_TYPE: ShapesClip}


def resource_folder(folder: str) -> Path:
    """A folder under ovdet/resources inside the installed package (it may not exist yet)."""
    return Path(str(resources.files("ovdet.resources").joinpath(folder)))


def bundled_path(name: str) -> Path:
    """The folder of a bundled model; a one-line error says how to rebuild a missing one."""
    folder, rebuild = BUNDLED[name]
    path = resource_folder(folder)
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(
            f"the bundled model {name!r} is missing from {path}; rebuild it: {rebuild}"
        )
    return path


def load_model(
    name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> VisionLanguageModel:
    """Load any supported vision-language model by alias, hub id, folder or bundled name."""
    target = str(bundled_path(name_or_path)) if name_or_path in BUNDLED else name_or_path

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
