"""Copy a trained run into the package as a bundled model: its inference view only.

A run folder holds model.safetensors, spec.json and an optimizer state (train_state.pt); a bundled
folder holds the first two (weights optionally in float16) plus reproduction.json, the measured
figures of that checkpoint. The copy is one atomic folder swap.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def bundle_run(
    source: str | os.PathLike,
    target: str | os.PathLike,
    extra: Any,
    half: bool = False,
    spec: dict[str, Any] | None = None,
) -> Path:
    """Write `source`'s weights and spec.json, and `extra` as reproduction.json, to `target`.

    Args:
        half: store floating weights in float16 (loaders copy them into float32 parameters).
        spec: fields that replace the spec's own (e.g. a dependency's bundled name instead of the
            run folder it was trained from).
    """
    from safetensors.torch import load_file, save_file

    from ovdet.io.atomic import atomic_folder, write_json

    source = Path(source)
    with atomic_folder(target) as tmp:
        if half:
            state = load_file(source / "model.safetensors")
            half_state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            save_file(half_state, str(tmp / "model.safetensors"))
        else:
            shutil.copy(source / "model.safetensors", tmp / "model.safetensors")
        spec_data = json.loads((source / "spec.json").read_text())
        write_json(tmp / "spec.json", {**spec_data, **(spec or {})}, indent=1)
        write_json(tmp / "reproduction.json", extra, indent=1)
    return Path(target)
