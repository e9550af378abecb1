"""Box regression targets: (dx, dy, dw, dh) deltas between boxes and reference boxes (R-CNN)."""

from __future__ import annotations

import math

import torch

from ovdet.ops.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

MAX_LOG_SCALE = math.log(1000.0 / 16)  # clamp dw, dh so exp() cannot overflow


class BoxCoder:
    """Encodes boxes relative to references and decodes deltas back (Faster R-CNN's eq. 2).

    Args:
        weights: (wx, wy, ww, wh) multiply the deltas (e.g. 10, 10, 5, 5 for RoI heads).
    """

    def __init__(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> None:
        self.weights = weights

    def encode(self, boxes: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """(N, 4) xyxy targets and (N, 4) xyxy references -> (N, 4) deltas."""
        wx, wy, ww, wh = self.weights
        t, r = xyxy_to_cxcywh(boxes.float()), xyxy_to_cxcywh(references.float())
        rw, rh = r[:, 2].clamp(min=1e-6), r[:, 3].clamp(min=1e-6)
        return torch.stack(
            [
                wx * (t[:, 0] - r[:, 0]) / rw,
                wy * (t[:, 1] - r[:, 1]) / rh,
                ww * torch.log(t[:, 2].clamp(min=1e-6) / rw),
                wh * torch.log(t[:, 3].clamp(min=1e-6) / rh),
            ],
            dim=1,
        )

    def decode(self, deltas: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """(N, 4) deltas and (N, 4) xyxy references -> (N, 4) xyxy boxes."""
        wx, wy, ww, wh = self.weights
        r = xyxy_to_cxcywh(references.float())
        dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
        dw = (deltas[:, 2] / ww).clamp(max=MAX_LOG_SCALE)
        dh = (deltas[:, 3] / wh).clamp(max=MAX_LOG_SCALE)
        cx, cy = r[:, 0] + dx * r[:, 2], r[:, 1] + dy * r[:, 3]
        return cxcywh_to_xyxy(torch.stack([cx, cy, r[:, 2] * dw.exp(), r[:, 3] * dh.exp()], dim=1))
