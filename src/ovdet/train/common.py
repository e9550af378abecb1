"""What every trainer shares: the learning-rate schedule and atomic checkpoint folders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ovdet.io.atomic import atomic_path, write_json


def warmup_cosine(
    opt: torch.optim.Optimizer, warmup: int, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` steps times a cosine decay to 0 at `steps`."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / max(1, warmup))
            * 0.5
            * (1 + math.cos(math.pi * min(s, steps) / max(1, steps)))
        ),
    )


def save_checkpoint(
    folder: Path, model: nn.Module, spec: dict[str, Any], state: dict[str, Any] | None
) -> None:
    """`model.safetensors`, `spec.json` and (if given) `train_state.pt`, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json(folder / "spec.json", spec, indent=1)
    if state is not None:
        with atomic_path(folder / "train_state.pt") as tmp:
            torch.save(state, tmp)
