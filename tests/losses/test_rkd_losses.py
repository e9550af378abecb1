"""RKD's L1, IRM and PMS losses against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from ovdet.losses.rkd import irm_loss, pms_loss, relation_matrix, rkd_l1_loss


def test_l1_by_hand():
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # normalised: (0.6, 0.8), (1, 0)
    t = torch.tensor([[0.0, 2.0], [0.0, 5.0]])  # normalised: (0, 1), (0, 1)
    # |0.6 - 0| + |0.8 - 1| + |1 - 0| + |0 - 1| = 2.8 over 4 elements
    assert rkd_l1_loss(s, t).item() == pytest.approx(15 * 2.8 / 4)
    assert rkd_l1_loss(s, t, weight=1.0).item() == pytest.approx(0.7)
    assert rkd_l1_loss(torch.zeros(0, 2), torch.zeros(0, 2)).item() == 0


def test_relation_matrix_and_irm_by_hand():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # orthogonal: relation = identity rows
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cosine 1/sqrt(2) between them
    c = 1 / math.sqrt(2)
    row = torch.tensor([1.0, c]) / math.sqrt(1 + c * c)
    torch.testing.assert_close(relation_matrix(s), torch.stack([row, row.flip(0)]))
    want = 2 * ((row[0] - 1) ** 2 + row[1] ** 2)
    assert irm_loss(s, t, weight=1.0).item() == pytest.approx(want.item())
    assert irm_loss(s, t).item() == pytest.approx(15 * want.item())
    # the same geometry in another basis costs nothing: IRM sees relations, not points
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assert irm_loss(s @ rot, s, weight=1.0).item() == pytest.approx(0, abs=1e-7)
    assert rkd_l1_loss(s @ rot, s).item() > 1
    assert irm_loss(s[:1], t[:1]).item() == 0  # one region has no relations


def test_pms_is_weighted_cross_entropy_and_checks_shapes():
    logits, labels = torch.randn(3, 5), torch.tensor([1, 4, 2])
    torch.testing.assert_close(pms_loss(logits, labels), 0.1 * F.cross_entropy(logits, labels))
    assert pms_loss(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).item() == 0
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(2, 2\)"):
        rkd_l1_loss(torch.zeros(3, 2), torch.zeros(2, 2))


@pytest.mark.parametrize("loss", [rkd_l1_loss, irm_loss])
def test_each_loss_pulls_the_student_to_the_teacher(loss):
    torch.manual_seed(0)
    t = torch.randn(6, 8)
    s = torch.randn(6, 8, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.05)
    before = loss(s, t).item()
    for _ in range(200):
        opt.zero_grad()
        loss(s, t).backward()
        opt.step()
    assert loss(s, t).item() < 0.1 * before, (before, loss(s, t).item())
