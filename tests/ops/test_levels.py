"""Pyramid RoIAlign: each box read from the level the FPN rule picks, checked box by box; the RPN
over a pyramid: one anchor size per level, proposals from every level."""

import math

import torch

from ovdet.detect.rpn import RPN, RPNConfig
from ovdet.ops.levels import pooled_regions, roi_levels
from ovdet.ops.roi_align import roi_align


def test_level_rule_by_hand():
    """k = floor(4 + log2(sqrt(wh) / 224)) clamped to [2, 5]: 224 px -> P4, 112 -> P3, 448 ->
    P5, 56 -> P2, 20 -> P2 (clamped), 2000 -> P5 (clamped)."""
    sides = [224, 112, 448, 56, 20, 2000, 223, 225]
    boxes = torch.tensor([[0.0, 0, s, s] for s in sides])
    want = [min(5, max(2, math.floor(4 + math.log2(s / 224)))) - 2 for s in sides]
    assert roi_levels(boxes, [4, 8, 16, 32]).tolist() == want == [2, 1, 3, 0, 0, 3, 1, 2]


def test_pooled_regions_read_each_box_from_its_level():
    torch.manual_seed(0)
    strides = [4, 8, 16, 32]
    levels = [torch.randn(2, 3, 256 // s, 256 // s) for s in strides]
    levels.append(torch.randn(2, 3, 4, 4))  # a P6 the RoI heads never read
    boxes = [
        torch.tensor([[0.0, 0, 30, 30], [10, 10, 250, 250]]),
        torch.tensor([[5.0, 5, 125, 125]]),
    ]
    got = pooled_regions(levels, strides, boxes, 7)
    rows = [(0, boxes[0][0]), (0, boxes[0][1]), (1, boxes[1][0])]
    for n, (image, box) in enumerate(rows):
        k = int(roi_levels(box[None], strides)[0])
        want = roi_align(levels[k][image : image + 1], [box[None]], 7, 1 / strides[k], 2, True)
        torch.testing.assert_close(got[n], want[0])
    assert {int(roi_levels(b[None], strides)[0]) for _, b in rows} == {0, 1, 2}  # three levels


def test_one_map_is_plain_roi_align():
    x = torch.randn(1, 4, 16, 16)
    boxes = [torch.tensor([[3.0, 4, 60, 70]])]
    torch.testing.assert_close(
        pooled_regions(x, [8], boxes, 7), roi_align(x, boxes, 7, 1 / 8, 2, True)
    )


def test_pyramid_rpn_has_one_size_per_level_and_proposes_from_each():
    torch.manual_seed(0)
    rpn = RPN(8, [4, 8, 16], RPNConfig(sizes=(16.0, 32.0, 64.0), post_nms=2000))
    assert rpn.num_anchors == 3
    maps = [torch.randn(1, 8, 64 // s, 64 // s) for s in (4, 8, 16)]
    anchors = [rpn.anchors(tuple(m.shape[-2:]), m.device, k) for k, m in enumerate(maps)]
    wh = [(a[:, 2:] - a[:, :2]) for a in anchors]
    for w, size in zip(wh, (16, 32, 64), strict=True):  # ratio 1 anchors are size x size
        assert torch.isclose(w.prod(1), torch.tensor(float(size * size))).all()
    boxes, scores, losses = rpn(maps, [(64, 64)], [torch.tensor([[4.0, 4, 40, 50]])])
    assert set(losses) == {"rpn_objectness", "rpn_box"} and losses["rpn_box"] > 0
    assert len(boxes[0]) == len(scores[0]) > 0
    try:
        RPN(8, [4, 8], RPNConfig(sizes=(16.0, 32.0, 64.0)))
    except ValueError as e:
        assert "one anchor size per level" in str(e)
    else:
        raise AssertionError("a size count unequal to the level count was accepted")
