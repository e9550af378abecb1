"""The ops an ONNX export routes NMS and RoIAlign to: eagerly the plain-torch kernels' results,
through onnxruntime the same (RoIAlign to float rounding, NMS exactly, ties ranked as ours)."""

import warnings

import pytest
import torch

from ovdet.ops.exportable import OPSET, graph_nms, graph_roi_align
from ovdet.ops.levels import pooled_regions
from ovdet.ops.nms import nms

ort = pytest.importorskip("onnxruntime")


def _boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 1], 1), g


def _run(module, inputs, path, dynamic):
    names = [f"in{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():  # the eager kernels run under the trace (not kept)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export(module, inputs, path, names, dynamic)
    session = ort.InferenceSession(str(path))
    feed = dict(zip(names, (x.numpy() for x in inputs), strict=True))
    return [torch.from_numpy(x) for x in session.run(None, feed)]


def _export(module, inputs, path, names, dynamic):
    torch.onnx.export(module, tuple(inputs), str(path), input_names=names, opset_version=OPSET,
                      dynamo=False, dynamic_axes=dynamic)  # fmt: skip
    session = ort.InferenceSession(str(path))
    return [
        torch.from_numpy(x)
        for x in session.run(None, dict(zip(names, (x.numpy() for x in inputs), strict=True)))
    ]  # noqa: E501


class _NMS(torch.nn.Module):
    def forward(self, boxes, scores):
        return graph_nms(boxes, scores, 0.5, max_keep=40, floor=0.2)


def test_graph_nms_is_nms_with_a_floor_and_ties(tmp_path):
    boxes, g = _boxes(200, 0)
    scores = torch.rand(200, generator=g)
    scores[::3] = 1.0  # saturated scores: ties ranked by position, as ops.nms ranks them
    above = (scores > 0.2).nonzero()[:, 0]
    expected = above[nms(boxes[above], scores[above], 0.5, max_keep=40)]
    assert torch.equal(_NMS()(boxes, scores), expected)
    (got,) = _run(
        _NMS(), [boxes, scores], tmp_path / "nms.onnx", {"in0": {0: "n"}, "in1": {0: "n"}}
    )
    assert torch.equal(got, expected)
    boxes2, g2 = _boxes(57, 1)  # another count through the same file: the size is dynamic
    scores2 = torch.rand(57, generator=g2)
    session = ort.InferenceSession(str(tmp_path / "nms.onnx"))
    got2 = session.run(None, {"in0": boxes2.numpy(), "in1": scores2.numpy()})[0]
    assert got2.tolist() == _NMS()(boxes2, scores2).tolist()


class _Pool(torch.nn.Module):
    def __init__(self, strides):
        super().__init__()
        self.strides = strides

    def forward(self, *inputs):
        *levels, boxes = inputs
        return pooled_regions(
            list(levels) if len(levels) > 1 else levels[0], self.strides, [boxes], 7
        )


@pytest.mark.parametrize("strides", [[8], [4, 8, 16, 32]])
def test_exported_pooling_reads_the_level_each_box_picks(tmp_path, strides):
    g = torch.Generator().manual_seed(2)
    levels = [torch.randn(1, 8, 256 // s, 256 // s, generator=g) for s in strides]
    boxes, _ = _boxes(30, 3)
    boxes = boxes * torch.tensor([2.0, 2.0, 2.5, 2.5])  # sizes that span the levels
    expected = _Pool(strides)(*levels, boxes)
    (got,) = _run(
        _Pool(strides), [*levels, boxes], tmp_path / "pool.onnx", {f"in{len(levels)}": {0: "k"}}
    )
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4


def test_graph_roi_align_eagerly_is_roi_align():
    from ovdet.ops.roi_align import roi_align

    f = torch.randn(2, 4, 16, 16)
    boxes, _ = _boxes(10, 4)
    rois = torch.cat([torch.arange(10)[:, None] % 2, boxes], 1).float()
    assert torch.equal(
        graph_roi_align(f, rois, 7, 1 / 8, 2, True), roi_align(f, rois, 7, 1 / 8, 2, True)
    )
