"""A detector's backbone from its spec: the shapes world's ConvBackbone, or a transformers
backbone with an FPN, or cut at C4 (its fourth stage then the RoI head's: `detect.c4`).

A spec's `backbone` entry (absent in the shapes world's checkpoints, which keep their
`backbone_channels`) is what rebuilds the architecture offline:
`{"name": <hub id or folder it came from>, "config": <the transformers config>, "out_features":
[...], "freeze_at": k, "neck": "fpn" or "c4", "channels": 256}`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ovdet.detect.backbone import ConvBackbone
from ovdet.errors import OvdetError

SHAPES = "shapes"  # the name of the shapes world's ConvBackbone
NECKS = ("fpn", "c4")
DEFAULT_OUT_FEATURES = ("stage1", "stage2", "stage3", "stage4")  # C2..C5


def backbone_entry(
    name: str, out_features: list[str], freeze_at: int, neck: str = "fpn", channels: int = 256
) -> tuple[nn.Module, dict[str, Any]]:
    """A pretrained transformers backbone by alias, hub id or folder, with its neck, and the spec
    entry that rebuilds it."""
    from ovdet.detect.c4 import C4Backbone
    from ovdet.detect.fpn import PyramidBackbone
    from ovdet.detect.hf_backbone import config_dict, load_hf_backbone

    if neck not in NECKS:
        raise OvdetError(f"--neck must be one of {', '.join(NECKS)}, got {neck!r}")
    if neck == "c4":
        out_features = ["stage4"]  # every stage is loaded; C4 is the third's output
    body = load_hf_backbone(name, list(out_features), freeze_at)
    entry = {
        "name": name,
        "config": config_dict(body),
        "out_features": list(out_features),
        "freeze_at": freeze_at,
        "neck": neck,
        "channels": channels,
    }
    if neck == "c4":
        return C4Backbone(body.model), entry
    return PyramidBackbone(body, channels), entry


def build_backbone(spec: dict[str, Any]) -> nn.Module:
    """The (randomly initialised) backbone a spec describes; the caller loads its weights."""
    entry = spec.get("backbone")
    if not entry:
        return ConvBackbone(spec["backbone_channels"])
    from ovdet.detect.c4 import C4Backbone
    from ovdet.detect.fpn import PyramidBackbone
    from ovdet.detect.hf_backbone import build_hf_backbone

    body = build_hf_backbone(entry["config"], entry["freeze_at"])
    if entry["neck"] == "c4":
        return C4Backbone(body.model)
    return PyramidBackbone(body, entry["channels"])


def describe(spec: dict[str, Any]) -> str:
    """A spec's backbone and neck in words, for errors that name two of them."""
    entry = spec.get("backbone")
    if not entry:
        return f"{SHAPES} (channels {spec.get('backbone_channels')})"
    return f"{entry['name']} ({entry['config'].get('model_type')}) + {entry['neck']}"


def same_architecture(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two specs' backbones and necks have the same architecture (weights aside)."""
    ea, eb = a.get("backbone"), b.get("backbone")
    if not ea or not eb:
        return not ea and not eb and a.get("backbone_channels") == b.get("backbone_channels")
    keys = ("out_features", "neck", "channels")
    return ea["config"] == eb["config"] and all(ea[k] == eb[k] for k in keys)
