import pytest
import torch
from PIL import Image

from ovdet.eval.detection import evaluate_detections
from ovdet.eval.recognition import gt_boxes_by_image, recognition_detections, recognize_dataset


def dataset(tmp_path):
    for i in (1, 2):
        Image.new("RGB", (64, 48), (40 * i, 90, 10)).save(tmp_path / f"im{i}.png")
    images = [{"id": i, "file_name": f"im{i}.png", "width": 64, "height": 48} for i in (1, 2)]
    cats = [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 11, "name": "cone"}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [0.0, 0, 20, 20], "area": 400},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [30.0, 10, 20, 30], "area": 600},
        {"id": 3, "image_id": 2, "category_id": 11, "bbox": [5.0, 5, 50, 30], "area": 1500},
        {
            "id": 4,
            "image_id": 2,
            "category_id": 7,
            "bbox": [60.0, 40, 10, 10],
            "area": 100,
        },  # partly outside
    ]
    return {"images": images, "categories": cats, "annotations": anns}


def test_top_k_labels_per_box():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    dets = recognition_detections(
        3, (20, 20), torch.tensor([[0.0, 0, 10, 10], [5, 5, 8, 9]]), scores, [7, 9, 11], 2
    )
    assert [(d["category_id"], round(d["score"], 2)) for d in dets] == [
        (9, 0.7),
        (11, 0.2),
        (7, 0.5),
        (9, 0.3),
    ]
    assert dets[3]["bbox"] == [5, 5, 3, 4]
    assert len(recognition_detections(3, (5, 5), torch.zeros(2, 4), scores, [7, 9, 11])) == 6
    with pytest.raises(ValueError, match="ids"):
        recognition_detections(3, (5, 5), torch.zeros(2, 4), scores, [7, 9])


def ann_at(gt, box):
    """The annotation whose box starts at `box`'s corner (GT boxes are the recognised boxes)."""
    return next(
        a
        for a in gt["annotations"]
        if abs(a["bbox"][0] - box[0]) < 1e-3 and abs(a["bbox"][1] - box[1]) < 1e-3
    )


def test_second_label_counts_only_when_kept(tmp_path):
    gt = dataset(tmp_path)
    truth = {a["id"]: a["category_id"] for a in gt["annotations"]}
    order = [7, 9, 11]

    def score(image, xyxy):
        # the right class always comes second: 0.3, a wrong one first: 0.6
        out = torch.full((len(xyxy), 3), 0.1)
        for i, box in enumerate(xyxy.tolist()):
            ann = ann_at(gt, box)
            right = order.index(truth[ann["id"]])
            out[i, right] = 0.3
            out[i, (right + 1) % 3] = 0.6
        return out

    top1 = evaluate_detections(gt, recognize_dataset(gt, tmp_path, score, 1, progress=False))
    every = evaluate_detections(gt, recognize_dataset(gt, tmp_path, score, None, progress=False))
    assert top1.metrics["AP"] == 0.0
    assert every.metrics["AP"] > 30.0


def test_gt_boxes_clipped():
    boxes = gt_boxes_by_image(
        {
            "images": [{"id": 1, "width": 64, "height": 48}],
            "annotations": [
                {"image_id": 1, "category_id": 1, "bbox": [60.0, 40, 10, 10]},
                {"image_id": 1, "category_id": 1, "bbox": [1.0, 1, 0, 5]},
                {"image_id": 1, "category_id": 1, "bbox": [1.0, 1, 5, 5], "iscrowd": 1},
            ],
        }
    )
    assert boxes[1].tolist() == [[60, 40, 64, 48]]


def test_box_top1_is_the_first_choice_per_gt_box(tmp_path):
    from ovdet.eval.recognition import box_top1

    gt = dataset(tmp_path)
    order = [7, 9, 11]

    def scorer(offset):
        def score(image, xyxy):
            out = torch.full((len(xyxy), 3), 0.1)
            for i, box in enumerate(xyxy.tolist()):
                ann = ann_at(gt, box)
                out[i, (order.index(ann["category_id"]) + offset) % 3] = 0.9
            return out

        return score

    right = recognize_dataset(gt, tmp_path, scorer(0), None, progress=False)
    wrong = recognize_dataset(gt, tmp_path, scorer(1), None, progress=False)
    assert box_top1(gt, right) == 100.0 and box_top1(gt, wrong) == 0.0
    # a box nobody scored counts as wrong; detections on other boxes do not count for it
    missing = [d for d in right if d["image_id"] != 2]
    assert box_top1(gt, missing) == 50.0
    shifted = [{**d, "bbox": [d["bbox"][0] + 3, *d["bbox"][1:]]} for d in right]
    assert box_top1(gt, shifted) == 0.0
