import pytest
import torch
from reference import iou_reference

from ovdet.errors import BoxError
from ovdet.ops.boxes import (
    box_area,
    box_iou,
    check_boxes,
    clip_boxes,
    cxcywh_to_xyxy,
    expand_boxes,
    scale_boxes,
    validate_input_boxes,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)


def random_boxes(n, size=100.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2
    return torch.cat([xy, xy + wh], 1)


def test_iou_matches_reference_including_degenerate_and_inverted():
    a = torch.cat([random_boxes(20), torch.tensor([[5.0, 5, 5, 5], [10, 10, 2, 2], [0, 0, 0, 9]])])
    b = torch.cat([random_boxes(15, seed=1), torch.tensor([[5.0, 5, 5, 5], [200, 200, 300, 300]])])
    got = box_iou(a, b)
    want = torch.tensor([[iou_reference(x, y) for y in b.tolist()] for x in a.tolist()])
    torch.testing.assert_close(got, want)
    assert not torch.isnan(got).any()


@pytest.mark.parametrize(
    "fwd, back", [(xyxy_to_xywh, xywh_to_xyxy), (xyxy_to_cxcywh, cxcywh_to_xyxy)]
)
def test_format_round_trip(fwd, back):
    boxes = random_boxes(50)
    torch.testing.assert_close(back(fwd(boxes)), boxes)


def test_conversions_by_hand():
    xyxy = torch.tensor([[10.0, 20, 40, 60]])
    assert xyxy_to_xywh(xyxy).tolist() == [[10, 20, 30, 40]]
    assert xyxy_to_cxcywh(xyxy).tolist() == [[25, 40, 30, 40]]
    assert box_area(xyxy).tolist() == [1200]
    assert box_area(torch.tensor([[5.0, 5, 1, 9]])).tolist() == [0]
    assert clip_boxes(torch.tensor([[-5.0, 3, 120, 90]]), (80, 100)).tolist() == [[0, 3, 100, 80]]
    assert scale_boxes(xyxy, 0.5, 2).tolist() == [[5, 40, 20, 120]]
    assert expand_boxes(xyxy, 1.5).tolist() == [[2.5, 10, 47.5, 70]]


@pytest.mark.parametrize(
    "boxes, message",
    [
        ([[0.0, 0, 10]], "shape"),
        ([[0.0, float("nan"), 10, 10]], "NaN"),
        ([[0.0, 0, float("inf"), 10]], "NaN or infinite"),
    ],
)
def test_check_boxes_rejects(boxes, message):
    with pytest.raises(BoxError, match=message):
        check_boxes(torch.tensor(boxes))


def test_check_boxes_accepts_empty():
    assert check_boxes(torch.zeros(0)).shape == (0, 4)


@pytest.mark.parametrize(
    "box, message",
    [
        ([30.0, 10, 20, 40], "inverted"),
        ([10.0, 10, 10.5, 40], "smaller than"),
        ([120.0, 10, 130, 40], "outside the 100x80 image"),
        ([-30.0, -30, -10, -10], "outside"),
        ([99.5, 10, 140, 40], "keeps less than"),
    ],
)
def test_validate_input_boxes_names_the_bad_row(box, message):
    boxes = torch.tensor([[0.0, 0, 50, 50], box])
    with pytest.raises(BoxError, match=message) as info:
        validate_input_boxes(boxes, (80, 100))
    assert "box 1" in str(info.value)


def test_validate_input_boxes_clips_partly_outside():
    out = validate_input_boxes(torch.tensor([[-10.0, 5, 50, 200]]), (80, 100))
    assert out.tolist() == [[0, 5, 50, 80]]
