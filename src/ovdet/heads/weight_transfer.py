"""RKD's weight transfer (Rasheed et al., NeurIPS 2022, section 3.4): the classification
embedding of a region is computed from the frozen distillation projection's weights, so the
image-level branch shares the object-centric alignment that distillation learned.

    e_cls(x) = W_P x + fc4(rho(fc3 x)),   W_P = fc2(rho(fc1 W_D)),   rho = LeakyReLU(0.1)

W_D is the (D, H) weight of the distillation projection (`RoIHead.embed`; its bias, if any, is
added unchanged), frozen: it still
produces the distilled embedding, but no loss changes it. fc1/fc2 map each of W_D's D rows
(an H-vector) to a row of W_P; fc3/fc4 are a residual path on the region features.

One change from the paper: ovdet computes W_P = W_D + fc2(rho(fc1 W_D)) with fc2 and fc4
starting at zero, so the transferred classifier starts exactly where distillation left it
rather than at a random projection (the same family of functions, a different start).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightTransfer(nn.Module):
    """(N, H) region features -> (N, D) classification embeddings.

    Args:
        distill: the distillation projection `Linear(H, D)` (frozen here).
        hidden: width of fc1/fc3's outputs.
    """

    def __init__(self, distill: nn.Linear, hidden: int = 256) -> None:
        super().__init__()
        h_in, d = distill.in_features, distill.out_features
        # held, not registered: W_D belongs to (and is saved with) the RoI head that owns it
        self._distill = (distill,)
        distill.requires_grad_(False)
        self.fc1, self.fc2 = nn.Linear(h_in, hidden), nn.Linear(hidden, h_in)
        self.fc3, self.fc4 = nn.Linear(h_in, hidden), nn.Linear(hidden, d)
        # start as W_P = W_D and no residual: the transferred classifier begins where
        # distillation left it
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        nn.init.zeros_(self.fc4.weight)
        nn.init.zeros_(self.fc4.bias)

    def transferred_weight(self) -> torch.Tensor:
        """(D, H) W_P = W_D + fc2(rho(fc1 W_D)) (fc2 starts at zero, so W_P starts at W_D)."""
        w_d = self._distill[0].weight
        return w_d + self.fc2(F.leaky_relu(self.fc1(w_d), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self._distill[0].bias
        out = x @ self.transferred_weight().t() + self.fc4(F.leaky_relu(self.fc3(x), 0.1))
        return out if bias is None else out + bias
