"""NMS and RoIAlign as graph nodes: what `nms` and `roi_align` become inside an ONNX export.

The plain-torch kernels loop in Python over data-dependent sizes (NMS's greedy pass, RoIAlign's
grid groups), which a trace would freeze at the example's values. Under `torch.onnx.export`
(the TorchScript exporter) they route here instead: each op is an `autograd.Function` that runs
the plain-torch kernel when called eagerly and emits ONNX's own operator when traced
(`NonMaxSuppression`, opset 10; `RoiAlign` with `coordinate_transformation_mode`, opset 16), so
the exported graph keeps the dynamic number of boxes.
"""

from __future__ import annotations

import torch

OPSET = 17  # RoiAlign's half_pixel mode (aligned=True) needs 16
_UNLIMITED = 1 << 30  # NonMaxSuppression's "no cap on kept boxes"


def exporting() -> bool:
    """Whether a `torch.onnx.export` trace is running (the ops below emit ONNX nodes)."""
    return torch.onnx.is_in_onnx_export()


class _NMS(torch.autograd.Function):
    """(N, 4) xyxy, (N,) scores -> (K,) kept indices, best first; boxes scoring <= `floor`
    are dropped before the greedy pass."""

    @staticmethod
    def forward(ctx, boxes, scores, iou_threshold, max_keep, floor):  # noqa: ANN001, ANN205
        from ovdet.ops.nms import nms

        rows = (scores > floor).nonzero()[:, 0]
        return rows[nms(boxes[rows], scores[rows], iou_threshold, max_keep=max_keep)]

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold, max_keep, floor):  # noqa: ANN001, ANN205
        def const(value: torch.Tensor):  # noqa: ANN202
            return g.op("Constant", value_t=value)

        # NonMaxSuppression takes (batch, N, 4) boxes, (batch, classes, N) scores and any
        # diagonal corners (IoU is symmetric in x and y); it keeps scores > score_threshold
        batched = g.op("Unsqueeze", boxes, const(torch.tensor([0])))
        per_class = g.op("Unsqueeze", scores, const(torch.tensor([0, 1])))
        cap = _UNLIMITED if max_keep is None else max_keep
        kept = g.op(
            "NonMaxSuppression",
            batched,
            per_class,
            const(torch.tensor([cap], dtype=torch.int64)),
            const(torch.tensor([iou_threshold], dtype=torch.float32)),
            const(torch.tensor([floor], dtype=torch.float32)),
        )  # (K, 3) rows of (batch, class, box), best first
        column = g.op("Gather", kept, const(torch.tensor([2])), axis_i=1)
        return g.op("Squeeze", column, const(torch.tensor([1])))


def graph_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    max_keep: int | None = None,
    floor: float = float("-inf"),
) -> torch.Tensor:
    """Greedy NMS that exports as ONNX `NonMaxSuppression`: (N, 4) xyxy, (N,) scores -> (K,)
    int64 indices of the kept boxes, best first. Boxes scoring <= `floor` are never kept.

    Equal scores are ranked by position, as `ops.nms.nms` ranks them (a stable sort):
    NonMaxSuppression's own order among ties is unspecified (and float32's sigmoid is exactly 1.0
    for every logit above about 17). So the boxes go in stably sorted (ONNX TopK puts the lower
    index first among equals) with their ranks as scores."""
    scores = scores.float()
    if exporting():  # the exporter has no stable Sort; its TopK is one
        order = scores.topk(scores.shape[0]).indices
    else:
        order = scores.sort(descending=True, stable=True).indices
    ranked = scores[order]
    ranks = torch.arange(ranked.shape[0], 0, -1, device=scores.device).to(torch.float32)
    ranks = torch.where(ranked > floor, ranks, torch.zeros_like(ranks))
    kept = _NMS.apply(boxes[order].float(), ranks, float(iou_threshold), max_keep, 0.0)
    return order[kept]


class _RoIAlign(torch.autograd.Function):
    """(B, C, H, W) features, (K, 4) xyxy boxes, (K,) int64 batch indices -> (K, C, P, P)."""

    @staticmethod
    def forward(ctx, features, boxes, batch, pool, scale, sampling, aligned):  # noqa: ANN001, ANN205
        from ovdet.ops.roi_align import roi_align

        rois = torch.cat([batch[:, None].to(boxes), boxes], 1)
        return roi_align(features, rois, pool, scale, sampling, aligned)

    @staticmethod
    def symbolic(g, features, boxes, batch, pool, scale, sampling, aligned):  # noqa: ANN001, ANN205
        return g.op(
            "RoiAlign",
            features,
            boxes,
            batch,
            output_height_i=pool,
            output_width_i=pool,
            sampling_ratio_i=sampling,
            spatial_scale_f=scale,
            mode_s="avg",
            coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
        )


def graph_roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    pool: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """`roi_align` on (K, 5) rows of (batch index, x1, y1, x2, y2) that exports as ONNX
    `RoiAlign` -> (K, C, pool, pool)."""
    return _RoIAlign.apply(
        features,
        rois[:, 1:].to(features.dtype),
        rois[:, 0].long(),
        int(pool),
        float(spatial_scale),
        int(sampling_ratio),
        bool(aligned),
    )
