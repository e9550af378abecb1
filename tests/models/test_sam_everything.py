from dataclasses import replace

import torch
from transformers import SamModel

from ovdet.models.sam import SamBackend
from ovdet.models.sam_everything import EverythingConfig, everything, point_grid, stability_score
from ovdet.ops.boxes import box_iou
from ovdet.ops.masks import masks_to_boxes


def test_point_grid_centres_cells():
    g = point_grid((40, 80), 4)
    assert g.shape == (16, 2)
    assert g[0].tolist() == [10.0, 5.0] and g[-1].tolist() == [70.0, 35.0]


def test_stability_score_by_hand():
    logits = torch.tensor([[[3.0, 0.5], [-0.5, -3.0]], [[-5.0, -5.0], [-5.0, -5.0]]])
    # > +1: one pixel; > -1: three pixels -> 1/3; an empty mask counts as stable
    torch.testing.assert_close(stability_score(logits, 1.0), torch.tensor([1 / 3, 1.0]))


def test_point_prompts_equal_transformers(tiny_sam_dir):
    sam = SamBackend.from_pretrained(str(tiny_sam_dir))
    image = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    state = sam.set_image(image)
    points = torch.tensor([[10.0, 12.0], [60.0, 30.0]])
    logits, iou = sam.predict_points(state, points)
    pixels, scale, _ = sam.preprocess(image)
    ref = SamModel.from_pretrained(str(tiny_sam_dir)).eval()
    with torch.no_grad():
        out = ref(
            pixel_values=pixels,
            input_points=(points * scale)[None, :, None],
            input_labels=torch.ones(1, 2, 1, dtype=torch.long),
            multimask_output=True,
        )
    torch.testing.assert_close(logits, out.pred_masks[0])
    torch.testing.assert_close(iou, out.iou_scores[0])
    assert logits.shape[:2] == (2, 3)


def test_everything_yields_nms_free_proposals_with_their_masks(tiny_sam_dir):
    sam = SamBackend.from_pretrained(str(tiny_sam_dir))
    image = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    cfg = EverythingConfig(
        points_per_side=6,
        iou_threshold=-1e9,
        stability_threshold=0.0,
        min_area=1,
        nms_threshold=0.5,
        points_per_batch=7,
    )
    regions = everything(sam, sam.set_image(image), cfg)
    assert 0 < len(regions) <= 6 * 6 * 3 and regions.masks.shape[1:] == (48, 80)
    torch.testing.assert_close(regions.xyxy, masks_to_boxes(regions.masks).float())
    assert (regions.scores[:-1] >= regions.scores[1:]).all()
    iou = box_iou(regions.xyxy, regions.xyxy).fill_diagonal_(0)
    assert (iou <= 0.5 + 1e-6).all()
    # the predicted-IoU filter: greedy NMS keeps higher scores first, so thresholding before
    # NMS (what `everything` does) keeps exactly the loose run's regions above the threshold
    state = sam.set_image(image)
    for t in (float(regions.scores.median()), float(regions.scores.max()) + 1e-4):
        strict = everything(sam, state, replace(cfg, iou_threshold=t))
        above = regions[regions.scores >= t]
        torch.testing.assert_close(strict.xyxy, above.xyxy)
        torch.testing.assert_close(strict.scores, above.scores)
    assert len(strict) == 0  # above the best predicted IoU nothing passes
