"""`Regions` <-> supervision's `Detections` (`pip install ovdet[interop]`): boxes, confidence,
class ids, masks and per-region data columns cross both ways, so ovdet's output feeds
supervision's annotators, trackers and dataset tools, and their detections come back as Regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ovdet.errors import OvdetError
from ovdet.types import Regions


def _supervision() -> Any:
    try:
        import supervision
    except ImportError:
        raise OvdetError(
            "this needs supervision: pip install 'ovdet[interop]' (or pip install supervision)"
        ) from None
    return supervision


def to_supervision(regions: Regions, names: Sequence[str] | None = None) -> Any:
    """`regions` -> `supervision.Detections`: xyxy (N, 4) float32, confidence (N,), class_id
    (N,) int, mask (N, H, W) bool, and `data` with each per-region column of `regions.data` as a
    numpy array, plus "class_name" when `names` (the vocabulary's) are given."""
    sv = _supervision()
    n = len(regions)
    data: dict[str, Any] = {}
    for key, value in regions.data.items():
        is_tensor = isinstance(value, torch.Tensor)
        column = value.detach().cpu().numpy() if is_tensor else np.asarray(value, dtype=object)
        if len(column) == n:
            data[key] = column
    if names is not None and regions.labels is not None:
        data["class_name"] = np.array([names[int(i)] for i in regions.labels], dtype=object)

    def numpy(x: torch.Tensor | None, dtype: Any) -> np.ndarray | None:
        return None if x is None else x.detach().cpu().numpy().astype(dtype)

    return sv.Detections(
        xyxy=numpy(regions.xyxy, np.float32).reshape(-1, 4),
        confidence=numpy(regions.scores, np.float32),
        class_id=numpy(regions.labels, np.int64),
        mask=numpy(regions.masks, bool),
        data=data,
    )


def from_supervision(detections: Any, image_size: tuple[int, int] | None = None) -> Regions:
    """`supervision.Detections` -> `Regions` of an (H, W) image (`image_size`; taken from the
    masks when it is not given). Columns of `detections.data` become `Regions.data` entries
    (numeric ones as tensors)."""
    if image_size is None:
        if detections.mask is None:
            raise OvdetError(
                "from_supervision needs image_size=(H, W): these detections have no masks to "
                "read it from"
            )
        image_size = tuple(int(s) for s in detections.mask.shape[1:3])

    def tensor(x: np.ndarray | None, dtype: torch.dtype) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(np.asarray(x)).to(dtype)

    data = {}
    for key, value in (detections.data or {}).items():
        value = np.asarray(value)
        data[key] = torch.as_tensor(value) if value.dtype.kind in "biuf" else list(value)
    return Regions(
        tensor(detections.xyxy, torch.float32).reshape(-1, 4),
        (int(image_size[0]), int(image_size[1])),
        scores=tensor(detections.confidence, torch.float32),
        labels=tensor(detections.class_id, torch.int64),
        masks=tensor(detections.mask, torch.bool),
        data=data,
    )
