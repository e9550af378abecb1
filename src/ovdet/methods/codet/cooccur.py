"""CoDet's co-occurring object discovery: within a group of images that share a concept, the
region of the query image that recurs in the other images is that concept's pseudo-region.

For query image i of a group, with n proposals per image (the top RPN proposals; the whole-image
box each image also carries is left out here, as the official code does: it feeds only the
image-caption loss) and region embeddings f:
- similarity `S_ij = sum_k w_k fhat_ik fhat_jk` between its regions and the other images'
  regions, fhat L2-normalised; text guidance `w = |t_c| / mean |t_c|` re-weights the channels by
  the concept's text embedding (no guidance: w = 1, the cosine);
- `p = softmax over the query's proposals of Phi(S_i)`, Phi = Linear((g-1)n -> n), ReLU,
  Linear(n -> 1) (its own learning rate: `CoDetTrainConfig.phi_lr`), reading each support
  image's similarities sorted best first by default (the paper's order: `inputs="ordered"`);
- the pseudo-region is the soft prototype `f_p = sum_i p_i f_i` (no threshold).
The parameter-free diagnostic replaces Phi by the mean over the other images of the best match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def text_guidance(text: torch.Tensor) -> torch.Tensor:
    """(D,) concept text embedding -> (D,) channel weights |t| / mean |t| (mean 1)."""
    a = text.abs()
    return a / a.mean().clamp(min=1e-12)


def group_similarity(features: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """(g, R, D) region embeddings of a group -> (g, R, (g-1) R) weighted similarities of each
    image's regions to the other images' regions (other images in group order, each image's
    regions in their order)."""
    g, r, d = features.shape
    f = F.normalize(features, dim=-1)
    q = f * weights if weights is not None else f
    sim = torch.einsum("ird,jsd->ijrs", q, f)  # (g, g, R, R)
    rows = []
    for i in range(g):
        others = [j for j in range(g) if j != i]
        rows.append(sim[i, others].permute(1, 0, 2).reshape(r, (g - 1) * r))
    return torch.stack(rows)


PHI_INPUTS = ("sorted", "ordered")


class CoOccurrence(nn.Module):
    """Phi: each query region's similarities to the support regions -> one logit.

    Args:
        supports: (g - 1) R, the support regions of a query.
        regions: R, the regions of one image.
        inputs: "ordered" (the paper's: the support regions in each image's proposal order, so
            the first Linear weighs positions) or "sorted" (each support image's similarities
            sorted best first: the same Phi, reading "the best match in image j, the second
            best, ..." wherever that region sits; it can express the best-match rule the
            ordered input cannot).

    Starts as the official code does: the last layer near zero (std 0.001, no bias), so p is
    uniform over the query's regions until Phi has learned.
    """

    def __init__(self, supports: int, regions: int, inputs: str = "sorted") -> None:
        super().__init__()
        if inputs not in PHI_INPUTS:
            raise ValueError(f"inputs must be one of {PHI_INPUTS}, got {inputs!r}")
        if supports % regions:
            raise ValueError(f"supports ({supports}) must be a multiple of regions ({regions})")
        self.regions, self.inputs = regions, inputs
        self.net = nn.Sequential(nn.Linear(supports, regions), nn.ReLU(), nn.Linear(regions, 1))
        nn.init.normal_(self.net[2].weight, std=0.001)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, sim: torch.Tensor) -> torch.Tensor:
        """(..., R, S) similarities -> (..., R) probabilities over the query's regions."""
        if self.inputs == "sorted":
            per_image = sim.unflatten(-1, (-1, self.regions))  # (..., R, g-1, R)
            sim = per_image.sort(-1, descending=True).values.flatten(-2)
        return self.net(sim).squeeze(-1).softmax(-1)


def parameter_free(sim: torch.Tensor, regions: int, scale: float = 50.0) -> torch.Tensor:
    """(..., R, (g-1) R) -> (..., R) softmax of `scale` x the mean over the other images of each
    region's best match there (the diagnostic row without Phi)."""
    best = sim.unflatten(-1, (-1, regions)).amax(-1)  # (..., R, g-1)
    return (scale * best.mean(-1)).softmax(-1)


PROTOTYPES = ("soft", "hard", "anneal")


def harden(p: torch.Tensor, share: float) -> torch.Tensor:
    """(..., R) probabilities -> `(1 - share) p + share onehot(argmax p)` in the forward pass,
    with p's gradient in the backward pass: share 0 is the soft prototype's p, share 1 the hard
    one's one-hot (the chosen region alone takes the concept, while Phi still learns from the
    loss as with the soft one)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    hard = F.one_hot(p.argmax(-1), p.shape[-1]).to(p)
    return p + share * (hard - p).detach()


def straight_through(p: torch.Tensor) -> torch.Tensor:
    """(..., R) probabilities -> the one-hot of their argmax forward, p's gradient backward."""
    return harden(p, 1.0)


def hard_share(prototype: str, step: int, steps: int) -> float:
    """How hard the prototype is at `step` of `steps`: "soft" 0, "hard" 1, "anneal" a linear ramp
    from 0 at the first step to 1 at the last (soft while Phi learns the co-occurrence, one-hot
    once it has: the hard prototype from the first step commits to an untrained Phi's picks)."""
    if prototype not in PROTOTYPES:
        raise ValueError(f"prototype must be one of {PROTOTYPES}, got {prototype!r}")
    if prototype == "anneal":
        return min(1.0, step / max(1, steps - 1))
    return float(prototype == "hard")


def prototypes(features: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(g, R, D) region embeddings and (g, R) probabilities -> (g, D) soft pseudo-regions."""
    return (p[..., None] * features).sum(-2)


PSEUDO_REGIONS = ("codet", "max-size", "max-score", "parameter-free")


def region_weights(
    method: str,
    features: torch.Tensor,
    boxes: torch.Tensor,
    concept_text: torch.Tensor,
    phi: CoOccurrence | None,
    guided: bool = True,
) -> torch.Tensor:
    """How each image of a group spreads its concept over its regions: (g, R) rows summing to 1.

    Args:
        method: "codet" (Phi over the co-occurrence similarities), "parameter-free" (the mean
            best match instead of Phi), "max-size" (Detic: the largest proposal), "max-score"
            (self-training: the proposal most similar to the concept's text).
        features: (g, R, D) region embeddings; the last region of each image is the whole image,
            which no rule chooses (its column is 0): the others read the R - 1 = n proposals,
            and Phi takes (g - 1) n similarities per proposal.
        boxes: (g, R, 4) xyxy; concept_text: (D,); guided: text guidance (codet, parameter-free).
    """
    g, r, _ = features.shape
    proposals = slice(0, r - 1)  # the whole-image box never stands for one object
    if method in ("codet", "parameter-free"):
        w = text_guidance(concept_text.to(features)) if guided else None
        # not detached: as in the official code, the loss also reaches the embeddings through the
        # similarities, so co-occurring regions are pulled together as Phi learns to pick them
        sim = group_similarity(features[:, proposals], w)  # (g, n, (g-1) n)
        if method == "parameter-free":
            p = parameter_free(sim, r - 1)
        elif phi is None:
            raise ValueError("CoDet's pseudo-regions need Phi")
        else:
            p = phi(sim)
        return torch.cat([p, p.new_zeros(g, 1)], -1)  # the whole image's share: 0
    if method == "max-size":
        b = boxes[:, proposals]
        score = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    elif method == "max-score":
        f = F.normalize(features[:, proposals].detach(), dim=-1)
        score = f @ F.normalize(concept_text.to(f), dim=0)
    else:
        raise ValueError(f"unknown pseudo-region method {method!r}; one of {PSEUDO_REGIONS}")
    return F.one_hot(score.argmax(-1), r).to(features)
