"""RKD's weight transfer: starts at W_D, W_D stays frozen under training, the transfer learns."""

import torch
from torch import nn

from ovdet.heads.weight_transfer import WeightTransfer


def test_starts_at_the_distillation_projection():
    torch.manual_seed(0)
    for bias in (False, True):
        distill = nn.Linear(12, 5, bias=bias)
        wt = WeightTransfer(distill, hidden=7)
        x = torch.randn(4, 12)
        torch.testing.assert_close(wt(x), distill(x))
        assert not any(p is distill.weight for p in wt.parameters())  # saved once, by its owner


def test_w_d_frozen_while_the_transfer_trains():
    torch.manual_seed(0)
    distill = nn.Linear(12, 5, bias=False)
    before = distill.weight.detach().clone()
    wt = WeightTransfer(distill, hidden=7)
    target = nn.Linear(12, 5, bias=False)  # a classifier W_D does not give
    x = torch.randn(64, 12)
    params = [p for p in wt.parameters() if p.requires_grad]
    assert all(p is not distill.weight for p in params)
    opt = torch.optim.Adam(params, lr=1e-2)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = (wt(x) - target(x).detach()).pow(2).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        assert distill.weight.grad is None
        opt.step()
    assert torch.equal(distill.weight, before)
    assert loss.item() < 0.2 * first, (first, loss.item())
