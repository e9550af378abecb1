import math

import pytest
import torch

from ovdet.losses.vild import (
    sigmoid_focal_loss,
    sigmoid_text_loss,
    vild_image_loss,
    vild_text_loss,
)


def test_text_loss_is_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0]])  # background, base 0, base 1
    want = -(1.0 - math.log(math.exp(2) + 1 + math.exp(1)))
    assert vild_text_loss(logits, torch.tensor([2])).item() == pytest.approx(want)
    assert vild_text_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).item() == 0


def test_sigmoid_text_loss_is_per_class_bce_by_hand():
    logits = torch.tensor([[1.0, -2.0], [0.5, 3.0]])  # no background column
    labels = torch.tensor([2, 0])  # row 0: base 1; row 1: background (negative for both)

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -math.log(p if y else 1 - p)

    want = (bce(1.0, 0) + bce(-2.0, 1) + bce(0.5, 0) + bce(3.0, 0)) / 2
    assert sigmoid_text_loss(logits, labels).item() == pytest.approx(want, rel=1e-6)
    assert sigmoid_text_loss(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)).item() == 0


def test_image_loss_is_l1_of_normalised_embeddings():
    region = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    clip = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    # row 0: |0.6 - 0| + |0.8 - 1| = 0.8; row 1: 0
    assert vild_image_loss(region, clip).item() == pytest.approx(0.4)


def test_focal_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    p1, p2 = 0.5, 1 / (1 + math.exp(-2))
    want = 0.25 * (1 - p1) ** 2 * -math.log(p1) + 0.75 * p2**2 * -math.log(1 - p2)
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(want, rel=1e-5)
