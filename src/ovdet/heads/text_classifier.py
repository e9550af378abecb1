"""ViLD-text's classifier: fixed text embeddings plus one learnable background slot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TextClassifier(nn.Module):
    """ViLD-text's classifier: z(r) = [sim(e_r, e_bg), sim(e_r, t_1), ..., sim(e_r, t_C)] / tau.

    Args:
        text_embeddings: (C, D) class text embeddings (normalised here; not trained).
        temperature: tau; logits are cosine similarities divided by it.
        background: learn a background embedding e_bg, returned as column 0 of the logits.
    """

    def __init__(
        self, text_embeddings: torch.Tensor, temperature: float = 0.01, background: bool = True
    ):
        super().__init__()
        if text_embeddings.ndim != 2:
            raise ValueError(f"text_embeddings must be (C, D), got {tuple(text_embeddings.shape)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.register_buffer("text", F.normalize(text_embeddings.float(), dim=-1), persistent=False)
        self.temperature = temperature
        dim = text_embeddings.shape[1]
        self.background = nn.Parameter(F.normalize(torch.randn(dim), dim=0)) if background else None

    @property
    def num_classes(self) -> int:
        return int(self.text.shape[0])

    def forward(
        self,
        region_embeddings: torch.Tensor,
        text: torch.Tensor | None = None,
        background: bool | None = None,
    ) -> torch.Tensor:
        """(N, D) region embeddings -> (N, 1 + C) logits with background first, or (N, C).

        Args:
            text: (C, D) class embeddings to score instead of the training vocabulary (e.g. base
                + novel at inference); normalised here.
            background: include the background column (default: when one is learned).
        """
        e = F.normalize(region_embeddings, dim=-1)
        if text is None:
            weights = self.text
        elif text.ndim != 2 or text.shape[1] != self.text.shape[1]:
            raise ValueError(
                f"text must be (C, D) embeddings of width D = {self.text.shape[1]}, "
                f"got {tuple(text.shape)}"
            )
        else:
            weights = F.normalize(text.to(e), dim=-1)
        if self.background is not None if background is None else background:
            if self.background is None:
                raise ValueError("this classifier learned no background embedding")
            weights = torch.cat([F.normalize(self.background, dim=0)[None], weights])
        return e @ weights.t() / self.temperature
