"""RegionSpot's fusion module (Yang et al., ICLR 2024): SAM's position-aware tokens read CLIP.

Each region's SAM token (width Ct) is projected to the fusion width W and becomes a query; the
keys and values are the whole image's CLIP feature map (D channels, h x w cells) plus CLIP's
image (class) token. N cross-attention blocks (default 3) refine the query, and a final
projection to CLIP's joint space gives a region embedding that is scored against text embeddings
with a learned scale and bias under a sigmoid (the focal loss trains it).

Choices beyond the paper's text, so that 16-category training data still generalises to unseen
names (documented in the README):
- Values stay in CLIP's space: with W = D the value and output projections start as the identity
  and the MLPs' last layers at zero, so an untrained module returns an attention-weighted mean of
  CLIP features (already a meaningful region embedding); training learns *where* to look and a
  correction, instead of a new embedding space.
- Optional attention prior (`prior="mask"` or `"box"`; default `"none"`, the paper's design):
  every query's attention logits get prior_weight * log(coverage) on each map cell (coverage =
  the fraction of the cell inside the region's SAM mask, or its box; floored at 0.01; the weight
  is learned from 1). It lets an untrained module read the region; with a trained SAM's tokens it
  did not help in the shapes world (see the README's ablation), so it is off by default.
- Keys carry a 2-D sine encoding of their cell's position and queries one of their box, both in
  letterbox-normalised coordinates, so query-key matching by position does not have to be
  decoded from SAM's token alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

PRIORS = ("none", "mask", "box")  # attention priors on the feature map


@dataclass
class RegionSpotConfig:
    token_dim: int  # SAM token width (256 for real SAM)
    clip_dim: int  # CLIP joint-space width D
    width: int | None = None  # fusion width W; default D
    depth: int = 3
    heads: int = 8
    feature_map: bool = True  # keys/values include CLIP's feature map
    class_token: bool = True  # keys/values include CLIP's image token
    box_position: bool = True  # add a sine encoding of the box to the query
    prior: str = "none"  # attention prior on the map: "none" (the paper), "mask" or "box"
    prior_probability: float = 0.01  # initial sigmoid probability (focal-loss bias init)

    def __post_init__(self) -> None:
        from ovdet.config import check_fields
        from ovdet.errors import ConfigError

        check_fields(self, positive=("token_dim", "clip_dim", "depth", "heads"))
        check_fields(self, choices={"prior": PRIORS})
        width = self.width or self.clip_dim
        if width % self.heads:
            raise ConfigError(f"heads must divide the fusion width {width}, got {self.heads} heads")

    def to_dict(self) -> dict:
        return asdict(self)


POSITION_FREQS = 8  # sine frequencies per coordinate: pi * 2^0 .. pi * 2^6
POSITION_DIM = 2 * 4 * POSITION_FREQS  # features of a box (4 coordinates, sin and cos)


def sine_encoding(coords: torch.Tensor, freqs: int = POSITION_FREQS) -> torch.Tensor:
    """(..., K) coordinates in [0, 1] -> (..., 2 * K * freqs) sin/cos features."""
    exps = torch.linspace(0, 6, freqs, device=coords.device)
    freqs = (2.0**exps) * math.pi
    x = coords[..., None].float() * freqs  # (..., K, freqs)
    return torch.cat([x.sin(), x.cos()], -1).flatten(-2)


def box_coverage(boxes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, 4) xyxy boxes in [0, 1] -> (B, N, h, w) fraction of each grid cell inside the box."""
    h, w = grid

    def overlap(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
        edges = torch.arange(n + 1, device=lo.device, dtype=torch.float32) / n
        a = torch.maximum(lo[..., None], edges[:-1])
        b = torch.minimum(hi[..., None], edges[1:])
        return (b - a).clamp(min=0) * n  # (B, N, n)

    ox = overlap(boxes[..., 0], boxes[..., 2], w)
    oy = overlap(boxes[..., 1], boxes[..., 3], h)
    return oy[..., :, None] * ox[..., None, :]


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention from queries to keys/values, then an MLP; both residual."""

    def __init__(self, width: int, kv_dim: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.norm_q, self.norm_kv = nn.LayerNorm(width), nn.LayerNorm(kv_dim)
        self.q, self.k = nn.Linear(width, width), nn.Linear(kv_dim, width)
        self.v, self.out = nn.Linear(kv_dim, width), nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        if kv_dim == width:  # values start as the CLIP features themselves
            for lin in (self.v, self.out):
                nn.init.eye_(lin.weight)
                nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(
        self, q: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, W) queries, (B, L, Dkv) keys/values, (B, L, W) key positions, (B, N, L)
        additive attention bias or None -> updated (B, N, W) queries and the (B, N, W) read (the
        attention output alone)."""
        b, n, w = q.shape
        length, h = kv.shape[1], self.heads
        qh = self.q(self.norm_q(q)).view(b, n, h, -1).transpose(1, 2)
        kh = (self.k(self.norm_kv(kv)) + pos).view(b, length, h, -1).transpose(1, 2)
        vh = self.v(kv).view(b, length, h, -1).transpose(1, 2)  # from the raw CLIP features
        att = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=None if bias is None else bias[:, None]
        )
        read = self.out(att.transpose(1, 2).reshape(b, n, w))
        q = q + read
        return q + self.mlp(self.norm_mlp(q)), read


class RegionSpot(nn.Module):
    """SAM tokens + CLIP map/class token -> L2-normalised region embeddings in CLIP's space."""

    def __init__(self, cfg: RegionSpotConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width or cfg.clip_dim
        self.width = w
        self.token_proj = nn.Sequential(nn.Linear(cfg.token_dim, w), nn.LayerNorm(w))
        self.box_pos = nn.Linear(POSITION_DIM, w) if cfg.box_position else None
        self.use_clip = cfg.feature_map or cfg.class_token
        if self.use_clip:
            self.key_pos = nn.Linear(POSITION_DIM, w)
            self.class_pos = nn.Parameter(torch.zeros(w))
            self.blocks = nn.ModuleList(
                CrossAttentionBlock(w, cfg.clip_dim, cfg.heads) for _ in range(cfg.depth)
            )
        self.norm = nn.LayerNorm(w)
        self.correction = nn.Linear(w, w)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.head = nn.Linear(w, cfg.clip_dim)
        if w == cfg.clip_dim and self.use_clip:
            nn.init.eye_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.prior_weight = nn.Parameter(torch.tensor(1.0))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(
            torch.tensor(-math.log((1 - cfg.prior_probability) / cfg.prior_probability))
        )

    def forward(
        self,
        tokens: torch.Tensor,
        boxes: torch.Tensor,
        clip_map: torch.Tensor | None = None,
        clip_global: torch.Tensor | None = None,
        mask_cover: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Region embeddings.

        Args:
            tokens: (B, N, Ct) SAM position-aware tokens.
            boxes: (B, N, 4) xyxy boxes divided by the letterbox side (in [0, 1]).
            clip_map: (B, D, h, w) CLIP feature map of the whole (letterboxed) image.
            clip_global: (B, D) CLIP image embedding.
            mask_cover: (B, N, h, w) fraction of each map cell inside the region's SAM mask
                (needed by prior="mask").
        Returns:
            (B, N, D) L2-normalised embeddings.
        """
        q = self.token_proj(tokens)
        if self.box_pos is not None:
            q = q + self.box_pos(sine_encoding(boxes.clamp(0, 1)))
        if not self.use_clip:  # the "w/o CLIP" ablation: SAM's token alone
            return F.normalize(self.head(self.norm(q)), dim=-1)
        kv, pos = self._keys(clip_map, clip_global)
        bias = self._prior(boxes, clip_map, mask_cover)
        read = q
        for block in self.blocks:
            q, read = block(q, kv, pos, bias)
        # the last read (CLIP features weighted by attention) plus a learned correction
        return F.normalize(self.head(read + self.correction(self.norm(q))), dim=-1)

    def _keys(
        self, clip_map: torch.Tensor | None, clip_global: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts, pos = [], []
        if self.cfg.feature_map:
            if clip_map is None:
                raise ValueError("this RegionSpot reads CLIP's feature map; clip_map is None")
            b, d, h, w = clip_map.shape
            parts.append(clip_map.flatten(2).transpose(1, 2))  # (B, h*w, D)
            ys = (torch.arange(h, device=clip_map.device) + 0.5) / h
            xs = (torch.arange(w, device=clip_map.device) + 0.5) / w
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            cells = torch.stack([gx, gy, gx, gy], -1).view(1, h * w, 4)  # a cell as a point box
            pos.append(self.key_pos(sine_encoding(cells)).expand(b, -1, -1))
        if self.cfg.class_token:
            if clip_global is None:
                raise ValueError("this RegionSpot reads CLIP's class token; clip_global is None")
            parts.append(clip_global[:, None])
            pos.append(self.class_pos.view(1, 1, -1).expand(clip_global.shape[0], 1, -1))
        return torch.cat(parts, 1), torch.cat(pos, 1)

    def _prior(
        self, boxes: torch.Tensor, clip_map: torch.Tensor | None, cover: torch.Tensor | None
    ) -> torch.Tensor | None:
        """(B, N, L) attention bias: prior_weight * log(coverage) on map cells, 0 on the class
        token; None without a prior or without the map."""
        if self.cfg.prior == "none" or not self.cfg.feature_map or clip_map is None:
            return None
        h, w = clip_map.shape[-2:]
        if self.cfg.prior == "box":
            cover = box_coverage(boxes, (h, w))
        elif cover is None:
            raise ValueError('prior="mask" needs mask_cover (B, N, h, w)')
        bias = self.prior_weight * cover.flatten(2).float().clamp(min=0.01).log()
        if self.cfg.class_token:
            bias = F.pad(bias, (0, 1))
        return bias

    def logits(self, embeddings: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(..., D) region embeddings, (C, D) text embeddings -> (..., C) logits."""
        return self.logit_scale.exp() * embeddings @ text.t() + self.logit_bias
