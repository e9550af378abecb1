"""RKD's losses (Rasheed et al., NeurIPS 2022; METHODS.md section 3), with the weights of the
official COCO configuration.

- Point-wise embedding matching: `15 * mean |s - t|` over every element of the L2-normalised
  student and teacher embeddings (the config's 0.15 times the code's hard-coded 100).
- Inter-embedding relationship matching (IRM): `15 * || rownorm(S S^T) - rownorm(T T^T) ||_F^2`
  over the K distilled regions of a batch, rownorm = L2-normalise each row: the student keeps
  the teacher's geometry between regions, not only each point.
- Pseudo max-score (PMS) loss on a caption's pseudo-box: `0.1 * CE` of the box's logits with the
  caption's label. The paper uses sigmoid BCE without background; ovdet's detectors keep ViLD's
  softmax with a learned background, so the pseudo-box's target is its class among background +
  the caption vocabulary (the same loss form as ViLD-text's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

L1_WEIGHT = 15.0
IRM_WEIGHT = 15.0
PMS_WEIGHT = 0.1


def _check_pairs(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(
            f"student and teacher embeddings must both be (K, D), got {tuple(student.shape)} "
            f"and {tuple(teacher.shape)}"
        )


def rkd_l1_loss(
    student: torch.Tensor, teacher: torch.Tensor, weight: float = L1_WEIGHT
) -> torch.Tensor:
    """weight * mean |normalize(student) - normalize(teacher)|; (K, D) each; 0 when K = 0."""
    _check_pairs(student, teacher)
    if student.shape[0] == 0:
        return student.sum() * 0
    s, t = F.normalize(student, dim=-1), F.normalize(teacher.to(student), dim=-1)
    return weight * (s - t).abs().mean()


def relation_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """(K, D) -> (K, K) cosine similarities of the normalised rows, each row L2-normalised."""
    e = F.normalize(embeddings, dim=-1)
    return F.normalize(e @ e.t(), dim=-1)


def irm_loss(
    student: torch.Tensor, teacher: torch.Tensor, weight: float = IRM_WEIGHT
) -> torch.Tensor:
    """weight * || relation(student) - relation(teacher) ||_F^2; (K, D) each; 0 when K < 2."""
    _check_pairs(student, teacher)
    if student.shape[0] < 2:
        return student.sum() * 0
    diff = relation_matrix(student) - relation_matrix(teacher.to(student))
    return weight * diff.pow(2).sum()


def pms_loss(
    logits: torch.Tensor, labels: torch.Tensor, weight: float = PMS_WEIGHT
) -> torch.Tensor:
    """weight * CE(logits, labels) of the pseudo-boxes; (P, 1 + C) logits, background first,
    (P,) labels in [1, C]; 0 when P = 0."""
    if logits.shape[0] == 0:
        return logits.sum() * 0
    return weight * F.cross_entropy(logits, labels)
