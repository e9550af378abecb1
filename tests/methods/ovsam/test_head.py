"""CLIP2SAM's recognition branch by hand: the FPN's shapes, the RoI head's unit embeddings, the
background-aware logits and loss, the geometric ensemble's exponents; interior points."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ovdet.methods.ovsam.head import (
    ClipFPN,
    RecognitionHead,
    class_logits,
    geometric_ensemble,
    recognition_loss,
)
from ovdet.ops.masks import interior_points

CHANNELS, STRIDES = [4, 6, 8], [2, 4, 8]


def levels(batch: int = 2, side: int = 32) -> list[torch.Tensor]:
    return [
        torch.randn(batch, c, side // s, side // s) for c, s in zip(CHANNELS, STRIDES, strict=True)
    ]


def test_fpn_keeps_each_levels_grid():
    fpn = ClipFPN(CHANNELS, 5)
    outs = [fpn(levels(), i) for i in range(3)]
    assert [tuple(o.shape) for o in outs] == [(2, 5, 16, 16), (2, 5, 8, 8), (2, 5, 4, 4)]
    x = levels()  # level 1 by hand: lateral of the coarsest, up-sampled, plus level 1's lateral
    top = fpn.lateral[2](x[2]).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(fpn(x, 1), fpn.smooth[1](fpn.lateral[1](x[1]) + top))


def test_head_embeds_every_box_of_every_image_as_a_unit_vector():
    head = RecognitionHead(CHANNELS, STRIDES, width=5, embed_dim=7, level=1, pool=4)
    boxes = [torch.tensor([[0.0, 0, 16, 16], [8, 8, 30, 20]]), torch.tensor([[2.0, 2, 9, 9]])]
    emb = head(levels(), boxes)
    assert emb.shape == (3, 7)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="level"):
        RecognitionHead(CHANNELS, STRIDES, 5, 7, level=3)


def test_logits_put_a_zero_background_first_and_scale_cosines():
    emb = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    text = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised inside
    logits = class_logits(emb, text, scale=100.0)
    c = 100 / math.sqrt(2)
    torch.testing.assert_close(logits, torch.tensor([[0.0, 100.0, 0.0], [0.0, c, c]]))


def test_background_is_weighted_in_the_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1])
    nll = -logits.log_softmax(1)[torch.arange(2), labels]
    expected = (0.1 * nll[0] + 1.0 * nll[1]) / 1.1  # a weighted mean, as torch defines it
    torch.testing.assert_close(recognition_loss(logits, labels, 0.1), expected)


def test_ensemble_trusts_the_head_on_base_and_clip_on_novel_classes():
    q = torch.tensor([[0.8, 0.2]])
    c = torch.tensor([[0.3, 0.6]])
    novel = torch.tensor([False, True])
    out = geometric_ensemble(q, c, novel, base_weight=0.9)
    expected = torch.tensor([[0.8**0.9 * 0.3**0.1, 0.2**0.1 * 0.6**0.9]])
    torch.testing.assert_close(out, expected)


def test_interior_points_lie_deep_inside_their_masks():
    masks = torch.zeros(3, 20, 30, dtype=torch.bool)
    masks[0, 2:18, 3:9] = True  # a bar
    masks[1, 5:8, 20:29] = True  # a thin strip
    masks[1, 12:19, 0:4] = True  # and a smaller blob: any pixel of the eroded rest will do
    xy = interior_points(masks)
    for mask, (x, y) in zip(masks[:2], xy[:2].tolist(), strict=True):
        assert mask[int(y), int(x)] and mask[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].all()
    assert xy[2].tolist() == [15.0, 10.0]  # an empty mask: the image centre
