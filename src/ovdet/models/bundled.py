"""The one table of models that ship inside the package (folders under ovdet/resources).

Imports nothing heavy: `ovdet.list_models()` answers without torch or transformers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ovdet.errors import WeightsNotFoundError


@dataclass(frozen=True)
class Bundled:
    """A bundled model: its name (= its folder), kind, what it is, the file that marks it
    present, and the command that rebuilds it."""

    name: str
    kind: str  # "clip", "sam", "vild", "regionspot", "sam2clip", "ovsam"
    description: str
    marker: str
    rebuild: str


# every stage of shapes-clip-v2 after the classic model: 800 steps on the styled captions
_V2 = "--steps 800 --lr 1e-3 --warmup 50 --channels-last --crop-scale 0.85 --data data/shapes-train"
# stages 7-9 add caption images of 2-3 shapes (named in each caption) after data/shapes-train
_PAIRS = (
    "ovdet shapes generate --caption-style train --caption-counts 0,0.6,0.4 --det-train 0 "
    "--det-val 0 --det-style 0 --det-captions 0 --det-val-uniform 0 --det-captions-companion 0"
)

BUNDLED: dict[str, Bundled] = {
    b.name: b
    for b in (
        Bundled(
            "shapes-clip",
            "clip",
            "tiny CLIP of the shapes world (conv image tower, 64 px; dense map at 128 px)",
            "config.json",
            "ovdet shapes generate --out data/shapes && ovdet shapes train-clip",
        ),
        Bundled(
            "shapes-clip-v2",
            "clip",
            "shapes-clip fine-tuned on shapes world v2's styled captions (families, fills, "
            "backgrounds, tiny to frame-filling, blur, JPEG; from stage 7 mostly scenes of 2-3 "
            "shapes), partial captions and every shown shape's name as positives",
            "config.json",
            "ovdet shapes generate --out data/shapes-train --caption-style train --captions 30000 "
            "--det-train 0 --det-val 0 --det-style 0 --det-captions 0 --det-val-uniform 0 "
            "--det-captions-companion 0 && "
            f"ovdet shapes train-clip {_V2} --out runs/clip-v2-s2 --init shapes-clip && "
            f"ovdet shapes train-clip {_V2} --out runs/clip-v2-s3 --init runs/clip-v2-s2 "
            "--ignore-partial --seed 1 && "
            f"ovdet shapes train-clip {_V2} --out runs/clip-v2-s4 --init runs/clip-v2-s3 "
            "--partial-positive --label-weight 1 --seed 3 && "
            f"ovdet shapes train-clip {_V2} --out runs/clip-v2-s5 --init runs/clip-v2-s4 "
            "--partial-positive --label-weight 3 --seed 4 && "
            f"ovdet shapes train-clip {_V2} --out runs/clip-v2-s6 --init runs/clip-v2-s5 "
            "--partial-positive --label-weight 6 --seed 7 && "
            f"{_PAIRS} --out data/shapes-pairs5 --seed 5 --captions 15000 && "
            f"{_PAIRS} --out data/shapes-pairs6 --seed 6 --captions 30000 && "
            f"ovdet shapes train-clip {_V2} data/shapes-pairs5 --out runs/clip-v2-s7 "
            "--init runs/clip-v2-s6 --partial-positive --label-weight 6 --seed 8 && "
            f"ovdet shapes train-clip {_V2} data/shapes-pairs6 data/shapes-pairs5 "
            "--out runs/clip-v2-s8 --init runs/clip-v2-s7 --partial-positive --label-weight 6 "
            "--seed 9 && "
            f"ovdet shapes train-clip {_V2} data/shapes-pairs6 data/shapes-pairs5 "
            "--out runs/clip-v2 --init runs/clip-v2-s8 --partial-positive --label-weight 6 "
            "--seed 10",
        ),
        Bundled(
            "shapes-sam",
            "sam",
            "tiny transformers SamModel of the shapes world (128 px)",
            "config.json",
            "ovdet shapes train-sam",
        ),
        Bundled(
            "shapes-vild",
            "vild",
            "ViLD (w = 0.5) trained on the shapes world's 11 base shapes",
            "spec.json",
            "ovdet shapes reproduce-vild --data data/shapes --steps 1200 --distill-proposals 24 "
            "--bundle",
        ),
        Bundled(
            "shapes-vild-text",
            "vild",
            "ViLD-text trained on the shapes world's 11 base shapes (the distillation proposer, "
            "and the start of fine-tuned runs)",
            "spec.json",
            "ovdet shapes reproduce-vild --data data/shapes --steps 1200 --distill-proposals 24 "
            "--bundle",
        ),
        Bundled(
            "shapes-regionspot",
            "regionspot",
            "RegionSpot fusion module over shapes-sam + shapes-clip",
            "spec.json",
            "ovdet shapes reproduce-regionspot --bundle",
        ),
        Bundled(
            "shapes-sam2clip",
            "sam2clip",
            "Open-Vocabulary SAM's SAM2CLIP: shapes-sam's encoder distilled into an adapter on "
            "shapes-clip's features (shapes-sam's decoder makes the masks)",
            "spec.json",
            "ovdet shapes reproduce-ovsam --bundle",
        ),
        Bundled(
            "shapes-ovsam",
            "ovsam",
            "Open-Vocabulary SAM of the shapes world: one shapes-clip pass, then masks and names "
            "from box or point prompts (CLIP2SAM over shapes-sam2clip)",
            "spec.json",
            "ovdet shapes reproduce-ovsam --bundle",
        ),
    )
}


def resource_folder(folder: str) -> Path:
    """A folder under ovdet/resources inside the installed package (it may not exist yet)."""
    return Path(str(resources.files("ovdet.resources").joinpath(folder)))


def bundled_path(name: str) -> Path:
    """The folder of a bundled model; a one-line error says how to rebuild a missing one."""
    entry = BUNDLED[name]
    path = resource_folder(entry.name)
    if not (path / entry.marker).is_file():
        raise WeightsNotFoundError(
            f"the bundled model {name!r} is missing from {path}; rebuild it: {entry.rebuild}"
        )
    return path


def resolve_bundled(name_or_path: str | os.PathLike) -> str:
    """The folder a bundled name denotes (as a string), else the name, hub id or path unchanged."""
    name = str(name_or_path)
    return str(bundled_path(name)) if name in BUNDLED else name


def checkpoint_folder(name_or_path: str | os.PathLike) -> Path:
    """The folder a bundled name denotes, the local snapshot of an ovdet checkpoint repo on the
    Hugging Face Hub ("user/repo": `models.hub`), or the path itself."""
    name = str(name_or_path)
    if name in BUNDLED:
        return bundled_path(name)
    from ovdet.models.hub import hub_checkpoint

    return hub_checkpoint(name) or Path(name)


SPEC_KINDS = ("regionspot", "ovsam", "sam2clip", "vild")


def spec_kind(spec: dict) -> str | None:
    """The model kind an ovdet trainer's spec.json names: its `kind`, or "vild" for a ViLD spec
    (which holds its config under "vild"; RKD and CoDet specs too); None if neither."""
    kind = spec.get("kind")
    if kind in SPEC_KINDS:
        return str(kind)
    return "vild" if "vild" in spec else None


def list_models() -> list[dict[str, str | bool]]:
    """Every bundled model: name, kind, description and whether it is present in this install."""
    return [
        {
            "name": b.name,
            "kind": b.kind,
            "description": b.description,
            "present": (resource_folder(b.name) / b.marker).is_file(),
        }
        for b in BUNDLED.values()
    ]
