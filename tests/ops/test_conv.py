"""BatchNorm folded into the preceding convolution at inference equals the unfolded stack."""

import pytest
import torch
from torch import nn

from ovdet.ops.conv import channels_last, folded_conv_bn, run_folded


def _stack(bias: bool) -> nn.Sequential:
    torch.manual_seed(0)
    stack = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=bias),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 4, 1),  # no BatchNorm after it: runs as is
    )
    for m in stack.modules():  # non-trivial affine parameters
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.uniform_(m.bias, -1.0, 1.0)
    with torch.no_grad():  # running statistics far from (0, 1)
        for _ in range(5):
            stack(3.0 * torch.randn(4, 3, 16, 16) + 1.0)
    return stack


@pytest.mark.parametrize("bias", [False, True])
def test_eval_mode_equals_the_unfolded_stack_values_and_gradients(bias):
    stack = _stack(bias).eval()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    ref = stack(x)
    got = run_folded(stack, x)
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    ref.square().sum().backward()
    expected = [p.grad.clone() for p in stack.parameters()] + [x.grad.clone()]
    stack.zero_grad()
    x.grad = None
    run_folded(stack, x).square().sum().backward()
    for a, b in zip([p.grad for p in stack.parameters()] + [x.grad], expected, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_training_mode_runs_the_stack_as_written():
    stack = _stack(False).train()
    x = torch.randn(2, 3, 16, 16)
    before = stack[3].running_mean.clone()
    ref = stack(x)
    assert torch.equal(run_folded(stack, x), ref)  # batch statistics, not running ones
    assert not torch.equal(stack[3].running_mean, before)  # running statistics still updated


def test_folded_weight_by_hand():
    conv = nn.Conv2d(1, 1, 1, bias=True)
    bn = nn.BatchNorm2d(1).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        bn.running_mean.fill_(3.0), bn.running_var.fill_(4.0 - bn.eps)
        bn.weight.fill_(0.5), bn.bias.fill_(-1.0)
    w, b = folded_conv_bn(conv, bn)
    # bn(2x + 1) = (2x + 1 - 3) / 2 * 0.5 - 1 = 0.5 x - 1.5
    assert torch.allclose(w.flatten(), torch.tensor([0.5])) and torch.allclose(
        b, torch.tensor([-1.5])
    )


def test_channels_last_gives_canonical_strides_to_a_batch_of_one():
    hwc = torch.randn(6, 5, 3)
    x = hwc.permute(2, 0, 1).unsqueeze(0)  # channels-last "contiguous", batch stride 3
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        assert conv(x).stride() == (240, 30, 5, 1)  # oneDNN fell back to NCHW output
        y = channels_last(x)
        assert y.stride() == (90, 1, 15, 3) and torch.equal(y, x)
        assert y.data_ptr() == x.data_ptr()  # no copy
        assert conv(y).stride() == (240, 1, 40, 8)  # channels-last output: the fast path
    z = torch.randn(2, 3, 4, 5)  # plain NCHW: copied into channels-last memory
    assert channels_last(z).stride() == (60, 1, 15, 3) and torch.equal(channels_last(z), z)
