import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from ovdet.errors import FormatError
from ovdet.ops.masks import (
    masks_to_boxes,
    rle_area,
    rle_decode,
    rle_encode,
    rle_from_string,
    rle_to_string,
)


def masks():
    g = np.random.default_rng(0)
    out = [g.random((23, 17)) > 0.6 for _ in range(5)]
    out += [np.zeros((8, 9), bool), np.ones((8, 9), bool), np.eye(6, 7, dtype=bool)]
    big = np.zeros((300, 400), bool)
    big[40:250, 30:390] = True  # long runs exercise multi-group encodings
    return out + [big]


@pytest.mark.parametrize("m", masks())
def test_rle_matches_pycocotools(m):
    ours = rle_encode(torch.from_numpy(m))
    theirs = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert ours["counts"] == theirs["counts"].decode()
    assert ours["size"] == list(theirs["size"])
    assert rle_decode(ours).numpy().tolist() == m.tolist()
    assert rle_area(ours) == int(mask_utils.area(theirs)) == int(m.sum())


def test_rle_uncompressed_counts_and_strings():
    counts = [0, 5, 3, 200, 1, 40000, 2]
    assert rle_from_string(rle_to_string(counts)) == counts
    m = rle_decode({"size": [2, 3], "counts": [1, 2, 3]})  # column-major: 0, 1, 1, 0, 0, 0
    assert m.tolist() == [[False, True, False], [True, False, False]]


@pytest.mark.parametrize(
    "rle, message",
    [
        ({"size": [2, 2], "counts": [1, 2]}, "sum to 3"),
        ({"counts": "abc"}, "'size' and 'counts'"),
        ({"size": [4, 4], "counts": "0P"}, "truncated"),
        ("not an rle", "must be a dict"),
    ],
)
def test_rle_errors(rle, message):
    with pytest.raises(FormatError, match=message):
        rle_decode(rle)


def test_masks_to_boxes():
    m = torch.zeros(3, 6, 8, dtype=torch.bool)
    m[0, 1:4, 2:7] = True
    m[1, 5, 0] = True
    assert masks_to_boxes(m).tolist() == [[2, 1, 7, 4], [0, 5, 1, 6], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="shape"):
        masks_to_boxes(torch.zeros(4, 4))


def test_point_region_boxes_take_the_mask_box_or_a_box_around_an_empty_mask_s_point():
    from ovdet.ops.masks import point_region_boxes

    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[0, 5:9, 10:16] = True  # the second mask is empty
    points = torch.tensor([[12.0, 6.0], [2.0, 15.0]])
    boxes = point_region_boxes(masks, points, 4)
    assert boxes.tolist() == [[10, 5, 16, 9], [0, 11, 6, 19]]  # x1 clamped at 0


def test_mask_boxes_stay_on_the_masks_device():
    """Masks on an accelerator give boxes there (the meta device stands in for CUDA here: a
    tensor made on the CPU inside would meet it and fail, as it did on a GPU)."""
    from ovdet.ops.masks import point_region_boxes

    masks = torch.zeros(2, 4, 4, dtype=torch.bool, device="meta")
    assert masks_to_boxes(masks).device.type == "meta"
    assert point_region_boxes(masks, torch.zeros(2, 2), 8).device.type == "meta"
