import pytest
import torch
from reference import nms_reference

from ovdet.errors import BoxError
from ovdet.ops.nms import batched_nms, nms


def cluster_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n // 5 + 1, 2, generator=g) * 200
    xy = (
        centres[torch.randint(len(centres), (n,), generator=g)] + torch.randn(n, 2, generator=g) * 6
    )
    wh = 10 + torch.rand(n, 2, generator=g) * 30
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_reference(seed, thr):
    boxes, scores = cluster_boxes(120, seed)
    assert nms(boxes, scores, thr).tolist() == nms_reference(boxes, scores, thr)


def test_nms_edge_cases():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    # identical boxes: only the best survives; zero-area and inverted boxes never suppress
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5], [5, 5, 5, 5], [9, 9, 1, 1]]
    )
    scores = torch.tensor([0.5, 0.9, 0.3, 0.2, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3, 4]
    assert nms(boxes, scores, 0.5).tolist() == nms_reference(boxes, scores, 0.5)
    # ties keep the lower index first (stable sort)
    assert nms(
        torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6]]), torch.tensor([1.0, 1.0]), 0.5
    ).tolist() == [0, 1]


def test_nms_rejects_nan():
    with pytest.raises(BoxError):
        nms(torch.tensor([[0.0, 0, float("nan"), 1]]), torch.tensor([1.0]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([float("nan")]), 0.5)
    with pytest.raises(ValueError, match="shape"):
        nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1.0, 2.0]), 0.5)


def test_batched_nms_keeps_classes_apart():
    boxes, scores = cluster_boxes(150, 7)
    idxs = torch.randint(3, (150,), generator=torch.Generator().manual_seed(0))
    got = set(batched_nms(boxes, scores, idxs, 0.5).tolist())
    want = set()
    for c in range(3):
        members = (idxs == c).nonzero()[:, 0]
        want |= {int(members[i]) for i in nms_reference(boxes[members], scores[members], 0.5)}
    assert got == want
    order = batched_nms(boxes, scores, idxs, 0.5)
    assert (scores[order][1:] <= scores[order][:-1]).all()


@pytest.mark.parametrize("n", [127, 128, 129, 257, 700])
def test_nms_across_row_blocks_equals_the_reference_loop(n):
    """The IoU relation is built 128 rows at a time: counts on and across the block boundaries,
    with dense clusters so that suppression chains cross from one block into the next."""
    boxes, scores = cluster_boxes(n, n)
    keep = nms(boxes, scores, 0.5).tolist()
    assert 0 < len(keep) < n
    assert keep == nms_reference(boxes, scores, 0.5)


def test_nms_many_boxes_keeps_no_overlapping_pair():
    # 5,000 boxes span 40 row blocks (too many for the reference loop in the suite's time):
    # every kept pair overlaps at most the threshold; every dropped box overlaps a kept one
    boxes, scores = cluster_boxes(5_000, 3)
    keep = nms(boxes, scores, 0.5)
    assert 0 < len(keep) < 5_000
    from ovdet.ops.boxes import box_iou

    kept = boxes[keep]
    iou = box_iou(kept, kept).fill_diagonal_(0)
    assert iou.max() <= 0.5
    dropped = torch.ones(5_000, dtype=torch.bool)
    dropped[keep] = False
    assert (box_iou(boxes[dropped], kept) > 0.5).any(1).all()


@pytest.fixture(scope="module")
def clustered():
    """700 clustered boxes (several 128-row blocks) and their full NMS, checked against the
    reference loop once (the loop is slow)."""
    boxes, scores = cluster_boxes(700, 11)
    full = nms(boxes, scores, 0.5)
    assert full.tolist() == nms_reference(boxes, scores, 0.5)
    return boxes, scores, full


@pytest.mark.parametrize("max_keep", [0, 1, 37, 130, 300, 10_000])
def test_max_keep_equals_slicing_the_full_result_across_row_blocks(clustered, max_keep):
    boxes, scores, full = clustered
    assert nms(boxes, scores, 0.5, max_keep=max_keep).tolist() == full[:max_keep].tolist()


def test_max_keep_must_not_be_negative():
    with pytest.raises(ValueError, match="-1"):
        nms(torch.zeros(2, 4), torch.zeros(2), 0.5, max_keep=-1)
