import math

import pytest
import torch

from ovdet.detect.anchors import cell_anchors, grid_anchors
from ovdet.detect.box_coder import BoxCoder
from ovdet.detect.matcher import BACKGROUND, IGNORE, match, sample


def test_box_coder_by_hand_and_round_trip():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    ref = torch.tensor([[0.0, 0, 10, 20]])
    box = torch.tensor([[5.0, 0, 15, 40]])  # centre moves by (5, 10), height doubles
    d = coder.encode(box, ref)
    torch.testing.assert_close(d, torch.tensor([[10 * 0.5, 10 * 0.5, 0.0, 5 * math.log(2)]]))
    torch.testing.assert_close(coder.decode(d, ref), box)
    g = torch.Generator().manual_seed(0)
    refs = torch.rand(50, 2, generator=g) * 50
    refs = torch.cat([refs, refs + 5 + torch.rand(50, 2, generator=g) * 40], 1)
    boxes = refs + torch.randn(50, 4, generator=g)
    torch.testing.assert_close(
        coder.decode(coder.encode(boxes, refs), refs), boxes, atol=1e-4, rtol=1e-4
    )
    huge = coder.decode(torch.tensor([[0.0, 0, 1e4, 1e4]]), ref)
    assert torch.isfinite(huge).all()


def test_anchors_by_hand():
    a = cell_anchors([16], [0.5, 1.0, 2.0])
    wh = a[:, 2:] - a[:, :2]
    torch.testing.assert_close(wh.prod(1), torch.full((3,), 256.0))
    torch.testing.assert_close(wh[:, 1] / wh[:, 0], torch.tensor([0.5, 1.0, 2.0]))
    g = grid_anchors((2, 3), 8, [16], [1.0])
    assert g.shape == (6, 4)
    torch.testing.assert_close(g[4], torch.tensor([12.0 - 8, 12 - 8, 12 + 8, 12 + 8]))  # (y=1, x=1)


def test_match_thresholds_and_low_quality():
    gt = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    boxes = torch.tensor(
        [
            [0.0, 0, 10, 10],  # IoU 1 with gt 0
            [0.0, 0, 10, 14],  # IoU 0.71 -> fg
            [0.0, 0, 10, 20],  # IoU 0.5 -> ignored between 0.3 and 0.7
            [30.0, 30, 40, 40],  # IoU 0 -> bg
            [50.0, 50, 70, 70],  # IoU 0.25 with gt 1: bg, but gt 1's best -> fg with low-quality
        ]
    )
    assert match(boxes, gt, 0.7, 0.3).tolist() == [0, 0, IGNORE, BACKGROUND, BACKGROUND]
    assert match(boxes, gt, 0.7, 0.3, allow_low_quality=True).tolist() == [
        0,
        0,
        IGNORE,
        BACKGROUND,
        1,
    ]
    assert match(boxes, torch.zeros(0, 4), 0.7, 0.3).tolist() == [BACKGROUND] * 5


@pytest.mark.parametrize(
    "n_pos, n_neg, batch, want",
    [(100, 500, 64, (16, 48)), (3, 500, 64, (3, 61)), (3, 2, 64, (3, 2))],
)
def test_sample_sizes(n_pos, n_neg, batch, want):
    matches = torch.cat(
        [
            torch.zeros(n_pos, dtype=torch.int64),
            torch.full((n_neg,), BACKGROUND),
            torch.full((7,), IGNORE),
        ]
    )
    pos, neg = sample(matches, batch, 0.25)
    assert (len(pos), len(neg)) == want
    assert (matches[pos] >= 0).all() and (matches[neg] == BACKGROUND).all()
