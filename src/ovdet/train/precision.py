"""Mixed precision for training: fp32, bf16 (CUDA and CPU; no loss scaling needed) or fp16 (CUDA,
with a gradient scaler). The model's forward runs under `torch.autocast`; the detectors cast
their logits and deltas to float32 before losses, box decoding and NMS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ovdet.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and (fp16) loss scaling for one run on `device_type` ("cpu", "cuda")."""

    def __init__(self, name: str = "fp32", device_type: str = "cpu") -> None:
        if name not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
        if name == "fp16" and device_type != "cuda":
            raise ConfigError(
                f"--precision fp16 needs a CUDA device (got {device_type}); use bf16 on the CPU"
            )
        self.name, self.device_type = name, device_type
        self.scaler = torch.amp.GradScaler(device_type) if name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.name == "fp32":
            yield
            return
        with torch.autocast(self.device_type, dtype=_DTYPES[self.name]):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Bring the gradients to their true scale (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)  # skipped when a gradient overflowed
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
