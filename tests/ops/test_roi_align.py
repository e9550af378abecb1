import pytest
import torch
from reference import roi_align_reference

from ovdet.ops.roi_align import roi_align


def random_rois(n, b, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.rand(n, generator=g) * w * 1.2 - 0.1 * w
    y1 = torch.rand(n, generator=g) * h * 1.2 - 0.1 * h
    x2 = x1 + torch.rand(n, generator=g) * w * 0.9
    y2 = y1 + torch.rand(n, generator=g) * h * 0.9
    idx = torch.randint(b, (n,), generator=g).float()
    return torch.stack([idx, x1, y1, x2, y2], 1)


@pytest.mark.parametrize("method", ["gather", "matrix"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2])
@pytest.mark.parametrize("output_size, scale", [((2, 2), 1.0), ((3, 4), 0.5), ((1, 1), 0.25)])
@pytest.mark.parametrize("h, w", [(9, 11), (10, 10)])  # a square map with non-square bins too
def test_roi_align_matches_reference(method, aligned, sampling_ratio, output_size, scale, h, w):
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    rois = random_rois(12, 2, h / scale, w / scale, seed=sampling_ratio + 5).double()
    got = roi_align(feat, rois, output_size, scale, sampling_ratio, aligned, method)
    want = roi_align_reference(feat, rois, output_size, scale, sampling_ratio, aligned)
    torch.testing.assert_close(got, want)


def test_roi_align_edge_boxes():
    feat = torch.arange(2 * 5 * 6, dtype=torch.float64).reshape(1, 2, 5, 6)
    rois = torch.tensor(
        [
            [0, 2.0, 2.0, 2.0, 2.0],  # zero area
            [0, 4.0, 3.0, 1.0, 1.0],  # inverted
            [0, -8.0, -8.0, -3.0, -3.0],  # fully outside: zeros
            [0, 4.5, 3.5, 9.0, 8.0],  # partly outside
            [0, 0.0, 0.0, 6.0, 5.0],  # whole map
        ],
        dtype=torch.float64,
    )
    for aligned, method in (
        (False, "gather"),
        (True, "gather"),
        (False, "matrix"),
        (True, "matrix"),
    ):
        got = roi_align(feat, rois, (2, 3), 1.0, -1, aligned, method)
        torch.testing.assert_close(got, roi_align_reference(feat, rois, (2, 3), 1.0, -1, aligned))
    assert roi_align(feat, rois[2:3], (2, 2), aligned=True).abs().sum() == 0


def test_roi_align_list_form_and_empty():
    feat = torch.randn(2, 4, 8, 8)
    boxes = [torch.tensor([[1.0, 1, 5, 6]]), torch.tensor([[0.0, 2, 7, 7], [2, 2, 4, 4]])]
    rois = torch.tensor([[0, 1.0, 1, 5, 6], [1, 0, 2, 7, 7], [1, 2, 2, 4, 4]])
    torch.testing.assert_close(
        roi_align(feat, boxes, 3, aligned=True), roi_align(feat, rois, 3, aligned=True)
    )
    assert roi_align(feat, torch.zeros(0, 5), (7, 7)).shape == (0, 4, 7, 7)
    assert roi_align(feat, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 4, 2, 2)


def test_roi_align_rejects_bad_input():
    feat = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(feat, torch.tensor([[1.0, 0, 0, 2, 2]]), 2)
    with pytest.raises(ValueError, match="NaN"):
        roi_align(feat, torch.tensor([[0.0, 0, float("nan"), 2, 2]]), 2)
    with pytest.raises(ValueError, match="shape"):
        roi_align(feat, torch.tensor([[0.0, 0, 2, 2]]), 2)
    with pytest.raises(ValueError, match="method"):
        roi_align(feat, torch.zeros(0, 5), 2, method="fast")
    with pytest.raises(ValueError, match="box lists"):
        roi_align(feat, [torch.zeros(1, 4), torch.zeros(1, 4)], 2)


@pytest.mark.parametrize("method", ["gather", "matrix"])
def test_roi_align_gradient_matches_reference(method):
    feat = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 0.5, 1.0, 5.0, 4.5], [1, 2.0, 0.0, 6.5, 5.5], [0, 1, 1, 3, 3]], dtype=torch.float64
    )
    roi_align(feat, rois, (2, 2), 0.9, 2, True, method).square().sum().backward()
    ref_feat = feat.detach().clone().requires_grad_(True)
    roi_align_reference(ref_feat, rois, (2, 2), 0.9, 2, True).square().sum().backward()
    torch.testing.assert_close(feat.grad, ref_feat.grad)
