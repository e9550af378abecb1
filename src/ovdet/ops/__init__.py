"""Pure tensor functions: box geometry, NMS, RoIAlign, mask RLE. No model, no I/O."""

from ovdet.ops.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    scale_boxes,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from ovdet.ops.masks import rle_area, rle_decode, rle_encode, rle_from_string, rle_to_string
from ovdet.ops.nms import batched_nms, nms
from ovdet.ops.roi_align import roi_align

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "nms",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_from_string",
    "rle_to_string",
    "roi_align",
    "scale_boxes",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]
