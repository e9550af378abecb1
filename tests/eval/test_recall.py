import pytest

from ovdet.eval.data import make_split
from ovdet.eval.recall import proposal_recall


def dataset():
    images = [{"id": 1, "width": 200, "height": 200}]
    cats = [{"id": 1, "name": "base thing"}, {"id": 2, "name": "novel thing"}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0, 50, 50], "area": 2500},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100.0, 100, 50, 50], "area": 2500},
    ]
    return {"images": images, "categories": cats, "annotations": anns}


def prop(box, score):
    return {"image_id": 1, "category_id": 1, "bbox": box, "score": score}


def test_recall_budgets_by_hand():
    gt = dataset()
    filler = [prop([180.0, 180, 10, 10], 0.5 - i * 1e-4) for i in range(200)]
    # GT 1 found at rank 1; GT 2 (novel) found only by a low-scored proposal (rank 202)
    props = [prop([0.0, 0, 50, 50], 0.99), *filler, prop([100.0, 100, 50, 50], 0.01)]
    r = proposal_recall(gt, props, split=make_split("novel thing", gt))
    assert r["AR@100"] == pytest.approx(50.0)
    assert r["AR@300"] == pytest.approx(100.0)
    assert r["AR@100_novel"] == pytest.approx(0.0)
    assert r["AR@300_novel"] == pytest.approx(100.0)


def test_recall_averages_iou_thresholds():
    gt = dataset()
    gt["annotations"] = gt["annotations"][:1]
    # IoU of [0, 0, 50, 35] with [0, 0, 50, 50] is 0.7: matched at thresholds 0.50..0.70 (5 of 10)
    r = proposal_recall(gt, [prop([0.0, 0, 50, 35], 0.9)], budgets=(100,))
    assert r["AR@100"] == pytest.approx(50.0)
    # class-agnostic: the proposal's category does not matter
    other = [{**prop([0.0, 0, 50, 50], 0.9), "category_id": 2}]
    assert proposal_recall(gt, other, budgets=(100,))["AR@100"] == pytest.approx(100.0)
