"""COCO polygons and RLE to masks, and Mask R-CNN's paste of a mask grid into its box."""

import numpy as np
import pytest
import torch

from ovdet.errors import FormatError
from ovdet.ops.masks import annotation_mask, paste_masks, polygons_to_mask, rle_encode


def test_polygons_fill_their_inside_and_unite():
    square = [2.0, 2, 8, 2, 8, 6, 2, 6]  # x in [2, 8], y in [2, 6]
    m = polygons_to_mask([square, [10.0, 0, 12, 0, 12, 2]], 8, 14)
    assert m[3:6, 3:8].all() and not m[0, 0] and not m[7, 9]
    assert m[3:6, 3:8].sum() == 15 and m[0:1, 11].all()  # the triangle, second polygon
    with pytest.raises(FormatError, match="needs >= 3"):
        polygons_to_mask([[1.0, 1, 2, 2]], 4, 4)


def test_annotation_mask_reads_rle_and_refuses_other_sizes():
    truth = torch.zeros(5, 7, dtype=torch.bool)
    truth[1:4, 2:6] = True
    assert torch.equal(annotation_mask(rle_encode(truth), 5, 7), truth)
    with pytest.raises(FormatError, match=r"size \(5, 7\) on a 6x7"):
        annotation_mask(rle_encode(truth), 6, 7)
    with pytest.raises(FormatError, match="polygons or RLE"):
        annotation_mask("oops", 5, 7)


def paste_reference(prob, box, size):
    """Pixel by pixel: a pixel centre inside the box reads the grid bilinearly."""
    h, w = size
    m = prob.shape[-1]
    x1, y1, x2, y2 = box
    out = np.zeros((h, w), bool)
    for r in range(h):
        for c in range(w):
            u, v = (c + 0.5 - x1) / (x2 - x1) * m - 0.5, (r + 0.5 - y1) / (y2 - y1) * m - 0.5
            if not (-1 < u < m and -1 < v < m):
                continue
            u0, v0 = int(np.floor(u)), int(np.floor(v))
            value = 0.0
            for dv in (0, 1):
                for du in (0, 1):
                    uu, vv = u0 + du, v0 + dv
                    if 0 <= uu < m and 0 <= vv < m:
                        value += (1 - abs(u - uu)) * (1 - abs(v - vv)) * float(prob[vv, uu])
            out[r, c] = value >= 0.5 and x1 <= c + 0.5 <= x2 + 1 and y1 <= r + 0.5 <= y2 + 1
    return out


def test_paste_equals_a_pixel_loop():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 6, 6, generator=g)
    boxes = torch.tensor([[2.0, 3, 15, 11], [0.5, 0.5, 7.5, 19.5], [10, 2, 24, 9]])
    got = paste_masks(probs, boxes, (20, 22))
    for i in range(3):
        want = paste_reference(probs[i].numpy(), boxes[i].tolist(), (20, 22))
        want[:, : int(np.floor(boxes[i, 0]))] = False  # nothing left of or above the box
        want[: int(np.floor(boxes[i, 1])), :] = False
        want[:, int(np.ceil(boxes[i, 2])) :] = False
        want[int(np.ceil(boxes[i, 3])) :, :] = False
        assert np.array_equal(got[i].numpy(), want), i
    assert paste_masks(torch.ones(1, 4, 4), torch.tensor([[3.0, 3, 3, 9]]), (10, 10)).sum() == 0
