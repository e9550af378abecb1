"""The real-scale data pipeline's parts: repeat factors by hand, flips and large-scale jitter
that move boxes and masks together, step batches that depend on (seed, step) alone."""

import math

import torch

from ovdet.data.coco import CocoDetection, Sample
from ovdet.data.pipeline import Augment, StepBatches, global_batch, repeat_factors
from ovdet.ops.masks import masks_to_boxes


def _gt(images: int, rare_in: int):
    anns = [
        {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [0, 0, 4, 4]}
        for i in range(images)
    ]
    anns += [
        {"id": 100 + i, "image_id": i + 1, "category_id": 2, "bbox": [1, 1, 3, 3]}
        for i in range(rare_in)
    ]
    return {
        "images": [
            {"id": i + 1, "file_name": f"{i}.png", "height": 8, "width": 8} for i in range(images)
        ],
        "annotations": anns,
        "categories": [{"id": 1, "name": "common"}, {"id": 2, "name": "rare"}],
    }


def test_repeat_factors_by_hand():
    data = CocoDetection(_gt(10, 1), "/nonexistent", [1, 2], 32)
    r = repeat_factors(data, threshold=0.5)
    # common in 10/10 images: max(1, sqrt(0.5 / 1)) = 1; rare in 1/10: sqrt(0.5 / 0.1) = 2.236
    assert torch.allclose(r, torch.tensor([math.sqrt(5)] + [1.0] * 9))
    draws = global_batch(0, 3, 20_000, 10, r)
    share = draws.count(0) / len(draws)
    assert abs(share - math.sqrt(5) / (9 + math.sqrt(5))) < 0.01  # in proportion to r


def _sample(side=64):
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(2, side, side, dtype=torch.bool)
    masks[0, 5:20, 3:30] = True
    masks[1, 30:40, 35:41] = True
    pixels = torch.randn(3, side, side, generator=g)
    pixels[:, :, 48:] = 0  # the letterbox's padding: the valid part is 64 x 48
    return Sample(
        1, pixels, 1.0, (64, 48), masks_to_boxes(masks).float(), torch.tensor([0, 1]), masks
    )


def test_flip_mirrors_the_valid_part_with_its_boxes_and_masks():
    from ovdet.data.pipeline import _flip

    s = _sample()
    flipped = _flip(s)
    assert torch.equal(flipped.pixels[:, :, :48], s.pixels[:, :, :48].flip(-1))
    assert torch.equal(flipped.pixels[:, :, 48:], s.pixels[:, :, 48:])  # padding stays
    torch.testing.assert_close(flipped.boxes, masks_to_boxes(flipped.masks).float())
    assert torch.equal(_flip(flipped).boxes, s.boxes) and torch.equal(_flip(flipped).masks, s.masks)


def test_jitter_keeps_boxes_on_their_masks():
    s = _sample()
    for seed in range(6):
        out = Augment(lsj=True)(s, torch.Generator().manual_seed(seed))
        assert out.pixels.shape == s.pixels.shape and len(out.boxes) == len(out.masks)
        if len(out.boxes):  # the cut box and the cut, resized mask agree to a pixel or two
            torch.testing.assert_close(
                out.boxes, masks_to_boxes(out.masks).float(), atol=2.5, rtol=0
            )
        h, w = out.size
        assert (out.boxes[:, 2] <= w).all() and (out.boxes[:, 3] <= h).all()


def test_step_batches_depend_on_seed_and_step_alone(monkeypatch):
    data = CocoDetection(_gt(10, 1), "/nonexistent", [1, 2], 32)
    monkeypatch.setattr(CocoDetection, "__getitem__", lambda self, i: _sample())
    whole = StepBatches(data, 7, 4, augment=Augment(flip=True))
    halves = [StepBatches(data, 7, 4, r, 2, Augment(flip=True)) for r in (0, 1)]
    for step in (0, 5):
        a = whole[step]
        parts = [h[step] for h in halves]
        assert a.indices == parts[0].indices + parts[1].indices
        for x, y in zip(a.samples, parts[0].samples + parts[1].samples, strict=True):
            assert torch.equal(x.pixels, y.pixels) and torch.equal(x.boxes, y.boxes)
        draws = [g.initial_seed() for g in a.generators]
        assert draws == [g.initial_seed() for p in parts for g in p.generators]
    assert whole[0].indices != whole[1].indices or whole[0].indices != whole[2].indices


def test_epoch_sampling_sees_every_image_once_per_pass_and_reshuffles():
    n, batch = 10, 4
    drawn = [i for step in range(5) for i in global_batch(3, step, batch, n, epochs=True)]
    assert sorted(drawn[:n]) == list(range(n)) and sorted(drawn[n:]) == list(range(n))
    assert drawn[:n] != drawn[n:]  # a new order each pass
    assert drawn[:n] != list(range(n))  # shuffled
    # a batch is a function of (seed, step) alone: resuming at step 3 draws the same
    assert global_batch(3, 3, batch, n, epochs=True) == drawn[12:16]
    assert global_batch(4, 0, batch, n, epochs=True) != drawn[:4]


def test_short_side_resize_caps_the_long_side():
    from ovdet.ops.letterbox import Letterbox

    assert Letterbox.fit(480, 640, 1333, 800).resized == (800, 1067)  # detectron2's 800 / 1333
    assert Letterbox.fit(200, 1000, 1333, 800).resized == (267, 1333)  # the long side's cap
    assert Letterbox.fit(480, 640, 1024).resized == (768, 1024)  # no short side: the long side


def _mixed_gt(sizes):
    """Images of the given (h, w), one annotation each."""
    gt = _gt(len(sizes), 0)
    for im, (h, w) in zip(gt["images"], sizes, strict=True):
        im["height"], im["width"] = h, w
    return gt


def test_aspect_groups_batch_one_orientation_cut_to_the_whole_batch(monkeypatch):
    from ovdet.data.pipeline import aspect_groups

    sizes = [(48, 64)] * 3 + [(30, 64)] * 3 + [(64, 40)] * 2  # 6 landscape, 2 portrait
    data = CocoDetection(_mixed_gt(sizes), "/nonexistent", [1, 2], 128)
    groups = aspect_groups(data)
    assert groups.tolist() == [0] * 6 + [1] * 2
    draws = [global_batch(1, step, 4, 8, groups=groups) for step in range(400)]
    assert all(len({int(groups[i]) for i in d}) == 1 for d in draws)  # one group a step
    portrait = sum(int(groups[d[0]]) for d in draws) / len(draws)
    assert abs(portrait - 2 / 8) < 0.06  # groups drawn in proportion to their images

    def square(self, i):  # the letterboxed square of image i: valid part random, padding 0
        h, w = self.input_size(i)
        pixels = torch.zeros(3, 128, 128)
        pixels[:, :h, :w] = torch.rand(3, h, w, generator=torch.Generator().manual_seed(i))
        return Sample(i, pixels, 1.0, (h, w), torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([0]))

    monkeypatch.setattr(CocoDetection, "__getitem__", square)
    whole = StepBatches(data, 7, 4, groups=groups)
    halves = [StepBatches(data, 7, 4, r, 2, groups=groups) for r in (0, 1)]
    for step in range(12):
        a = whole[step]
        h = max(data.input_size(i)[0] for i in a.indices)
        w = max(data.input_size(i)[1] for i in a.indices)
        expected = (-(-h // 32) * 32, -(-w // 32) * 32)
        # landscape inputs are 96 x 128 or 60 x 128, portrait 128 x 80
        assert expected in ((96, 128), (64, 128), (128, 96))
        assert all(tuple(s.pixels.shape[-2:]) == expected for s in a.samples)
        parts = [p[step] for p in halves]  # every process cuts to the whole batch's extent
        for x, y in zip(a.samples, parts[0].samples + parts[1].samples, strict=True):
            assert torch.equal(x.pixels, y.pixels)
        for i, s in zip(a.indices, a.samples, strict=True):  # only padding was cut
            assert torch.equal(s.pixels, square(data, i).pixels[:, : expected[0], : expected[1]])


def test_a_cut_refuses_an_image_larger_than_its_annotated_size():
    import pytest

    from ovdet.data.pipeline import cut
    from ovdet.errors import FormatError

    with pytest.raises(FormatError, match="more than its annotated width and height"):
        cut(_sample(), (32, 64))  # the sample's valid part is 64 x 48
