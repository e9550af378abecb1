import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from synthetic import synthetic

from ovdet.errors import FormatError
from ovdet.eval.data import cap_per_image, coco_ovd_split, load_detections, make_split
from ovdet.eval.detection import evaluate_detections


def pycocotools_eval(gt, dets, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_ap_equals_pycocotools(seed, iou_type):
    gt, dets = synthetic(seed, masks=iou_type == "segm")
    ours = evaluate_detections(gt, dets, iou_type, "coco")
    ref = pycocotools_eval(gt, dets, iou_type)
    want = [v * 100 if v > -1 else -1 for v in ref.stats[:6]]
    got = [ours.metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    np.testing.assert_allclose(got, want, atol=1e-3)
    # per-category AP equals pycocotools' precision table averaged per category
    for k, row in enumerate(ours.per_category):
        p = ref.eval["precision"][:, :, k, 0, -1]
        want_k = p[p > -1].mean() * 100 if (p > -1).any() else -1
        assert row["AP"] == pytest.approx(want_k, abs=1e-3)


def test_base_novel_means_of_per_category_ap():
    gt, dets = synthetic(4)
    split = make_split("thing1, thing4", gt)
    result = evaluate_detections(gt, dets, split=split)
    rows = {r["name"]: r for r in result.per_category}
    novel = [rows["thing1"]["AP50"], rows["thing4"]["AP50"]]
    base = [r["AP50"] for n, r in rows.items() if n not in ("thing1", "thing4") and r["AP50"] > -1]
    assert result.metrics["AP50_novel"] == pytest.approx(np.mean(novel), abs=1e-3)
    assert result.metrics["AP50_base"] == pytest.approx(np.mean(base), abs=1e-3)
    assert make_split([2, 5], gt).novel == frozenset({2, 5})
    with pytest.raises(FormatError, match="not in the ground truth"):
        make_split("unicorn", gt)


def test_split_files_give_the_inline_split_and_bad_ones_one_line(tmp_path):
    gt, _ = synthetic(4)
    want = make_split("thing1, thing4", gt)
    thing4 = next(c["id"] for c in gt["categories"] if c["name"] == "thing4")
    files = {
        "n.txt": "\ufeffthing1\n\nthing4\n".encode(),  # a BOM, a blank line
        "n.json": f'\ufeff["thing1", {thing4}]'.encode(),  # names and ids
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert make_split(str(tmp_path / name), gt) == want, name
    bad = {
        "bad.json": (b"{oops", "is not valid JSON"),
        "dict.json": (b'{"novel": ["thing1"]}', "holds a JSON list .* got dict"),
        "bool.json": (b"[true]", "a name or an id, got True"),
        "bin.txt": (b"thing1 \xff\xfe", "is not UTF-8 text"),
    }
    for name, (data, message) in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FormatError, match=message):
            make_split(str(tmp_path / name), gt)
    with pytest.raises(FormatError, match="split file not found: .*missing.json"):
        make_split(str(tmp_path / "missing.json"), gt)


def test_coco_ovd_split_is_48_17():
    split = coco_ovd_split()
    assert len(split.base) == 48 and len(split.novel) == 17 and not split.base & split.novel
    assert 5 in split.novel and 1 in split.base  # airplane novel, person base


def test_coco_ovd_split_needs_coco_category_ids():
    coco = {"images": [], "annotations": []}
    coco["categories"] = [{"id": 1, "name": "person"}, {"id": 5, "name": "Airplane"}]
    split = make_split("coco-ovd", coco)
    assert split.base == {1} and split.novel == {5}
    shapes = {**coco, "categories": [{"id": 1, "name": "circle"}, {"id": 5, "name": "star"}]}
    with pytest.raises(FormatError, match="its category 1 is 'circle', COCO's is 'person'"):
        make_split("coco-ovd", shapes)


def lvis_toy():
    box = [10.0, 10.0, 20.0, 20.0]
    other = [60.0, 60.0, 20.0, 20.0]
    images = [
        {
            "id": 1,
            "width": 100,
            "height": 100,
            "neg_category_ids": [1],
            "not_exhaustive_category_ids": [],
        },
        {
            "id": 2,
            "width": 100,
            "height": 100,
            "neg_category_ids": [],
            "not_exhaustive_category_ids": [3],
        },
    ]
    cats = [
        {"id": 1, "name": "rare", "frequency": "r"},
        {"id": 2, "name": "common", "frequency": "c"},
        {"id": 3, "name": "frequent", "frequency": "f"},
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": box, "area": 400},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": other, "area": 400},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": box, "area": 400},
    ]
    dets = [
        {"image_id": 1, "category_id": 3, "bbox": box, "score": 0.9},  # TP
        {"image_id": 2, "category_id": 3, "bbox": other, "score": 0.95},  # not exhaustive: ignored
        {"image_id": 1, "category_id": 1, "bbox": other, "score": 0.8},  # verified negative: FP
        {"image_id": 2, "category_id": 1, "bbox": other, "score": 0.7},  # TP
        {"image_id": 2, "category_id": 2, "bbox": box, "score": 0.6},  # TP
        {"image_id": 1, "category_id": 2, "bbox": box, "score": 0.99},  # unverified: ignored
    ]
    return {"images": images, "categories": cats, "annotations": anns}, dets


def test_lvis_federated_groups_by_hand():
    gt, dets = lvis_toy()
    m = evaluate_detections(gt, dets, protocol="lvis").metrics
    assert m["APr"] == pytest.approx(50.0)  # FP ranked first, then TP: precision 0.5 at all recalls
    assert m["APc"] == pytest.approx(100.0)
    assert m["APf"] == pytest.approx(100.0)
    assert m["AP"] == pytest.approx(250 / 3, abs=1e-3)
    # the COCO protocol counts the ignored detections as false positives
    coco = evaluate_detections(gt, dets, protocol="coco").metrics
    assert coco["AP"] < m["AP"]
    split = make_split("lvis", gt)
    assert split.novel == frozenset({1})


def test_lvis_caps_300_per_image_across_categories():
    gt, dets = lvis_toy()
    good = [d for d in dets if d["image_id"] == 2 and d["category_id"] == 2]
    flood = [
        {"image_id": 2, "category_id": 1, "bbox": [0.0, 0, 5, 5], "score": 0.9} for _ in range(300)
    ]
    m = evaluate_detections(gt, flood + good, protocol="lvis").metrics
    assert m["APc"] == 0.0  # the correct "common" detection ranks 301st in its image and is cut
    assert evaluate_detections(gt, flood[:299] + good, protocol="lvis").metrics["APc"] == 100.0
    kept = cap_per_image(
        [{"image_id": i % 2, "score": s} for i, s in enumerate([0.1, 0.5, 0.3, 0.9, 0.7])], 2
    )
    assert [d["score"] for d in kept] == [0.5, 0.3, 0.9, 0.7]


def test_lvis_needs_frequencies():
    gt, dets = synthetic(0)
    with pytest.raises(FormatError, match="frequency"):
        evaluate_detections(gt, dets, protocol="lvis")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(image_id=999), "detection 3 names image_id 999"),
        (lambda d: d.update(category_id=7), "category_id 7"),
        (lambda d: d.update(score=float("nan")), "score nan"),
        (lambda d: d.update(bbox=[1, 2, -3, 4]), "negative-size"),
        (lambda d: d.pop("bbox"), "bbox None"),
    ],
)
def test_bad_detections_name_the_entry(mutate, message):
    gt, dets = synthetic(0)
    mutate(dets[3])
    with pytest.raises(FormatError, match=message):
        evaluate_detections(gt, dets)


def test_empty_results_score_zero_and_inputs_untouched():
    gt, dets = synthetic(0)
    assert evaluate_detections(gt, []).metrics["AP"] == 0.0
    before = copy.deepcopy(dets)
    evaluate_detections(gt, dets)
    assert dets == before
    with pytest.raises(FormatError, match="segmentation"):
        evaluate_detections(gt, dets, "segm")


def test_lvis_cap_groups_by_image_id_not_its_hash():
    # hash(-1) == hash(-2) in CPython: grouped by hash, the two images would share one budget
    dets = [{"image_id": i, "score": s} for i in (-1, -2) for s in (0.9, 0.8, 0.7)]
    kept = cap_per_image(dets, 2)
    assert sorted((d["image_id"], d["score"]) for d in kept) == [
        (-2, 0.8),
        (-2, 0.9),
        (-1, 0.8),
        (-1, 0.9),
    ]


def _gt():
    return {
        "images": [
            {"id": 1, "file_name": "images/a.png", "height": 20, "width": 20},
            {"id": 2, "file_name": "images/b.png", "height": 20, "width": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [2, 2, 8, 8]},
        ],
        "categories": [{"id": 1, "name": "a", "frequency": "f"}],
    }


def _set(path, value):
    def mutate(gt):
        *keys, last = path
        node = gt
        for k in keys:
            node = node[k]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
        return gt

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set(("annotations", 1, "id"), 1), "annotation id 1 appears twice"),
        (_set(("annotations", 1, "id"), KeyError), "annotation 1 needs an integer 'id'"),
        (
            _set(("categories",), [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
            "category id 1 appears twice",
        ),
        (_set(("images", 1, "id"), 1), "image id 1 appears twice"),
        (_set(("annotations", 0, "bbox"), "1 1 8 8"), "expected [x, y, width, height]"),
        (_set(("annotations", 0, "bbox"), [1, 1, 8]), "expected [x, y, width, height]"),
        (_set(("annotations", 0, "bbox"), [1, 1, float("nan"), 8]), "non-finite"),
        (_set(("annotations", 0, "image_id"), 9), "not among the images"),
        (_set(("annotations", 0, "category_id"), 9), "not a category"),
    ],
)
def test_bad_ground_truth_names_the_record(mutate, message):
    with pytest.raises(FormatError) as info:
        evaluate_detections(mutate(_gt()), [])
    assert message in str(info.value)


def test_segm_ground_truth_needs_masks():
    with pytest.raises(FormatError, match="no segmentation"):
        evaluate_detections(_gt(), [], iou_type="segm")


def _det(**kw):
    return {"image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8], "score": 0.9, **kw}


@pytest.mark.parametrize(
    "entry, message",
    [
        (_det(image_id=[1]), "image_id [1]"),
        (_det(category_id={"id": 1}), "category_id {'id': 1}"),
        (_det(image_id="c.png"), "no ground-truth image has that file name"),
        (_det(bbox=[1, 1, True, 8]), "expected [x, y, width, height]"),
    ],
)
def test_bad_detections_never_reach_faster_coco_eval(entry, message):
    with pytest.raises(FormatError) as info:
        evaluate_detections(_gt(), [entry])
    assert message in str(info.value)


def test_malformed_rle_and_partial_boxes_in_segm_results():
    import torch

    from ovdet.ops.masks import rle_encode

    gt = _gt()
    for a in gt["annotations"]:
        m = torch.zeros(20, 20, dtype=torch.bool)
        x, y, w, h = a["bbox"]
        m[y : y + h, x : x + w] = True
        a["segmentation"] = rle_encode(m)
    good = rle_encode(torch.ones(20, 20, dtype=torch.bool))
    bad = [
        ({**good, "size": [10, 10]}, "its image is [20, 20]"),
        ({"size": [20, 20], "counts": [5, 5]}, "do not cover"),
        ({"size": [20, 20]}, "RLE counts 'None'"),
    ]
    for rle, message in bad:
        with pytest.raises(FormatError) as info:
            evaluate_detections(gt, [_det(segmentation=rle)], iou_type="segm")
        assert message in str(info.value)
    # some entries with a bbox, some without: boxes are dropped and the masks decide
    mask = gt["annotations"][0]["segmentation"]
    dets = [
        _det(segmentation=mask),
        {k: v for k, v in _det(segmentation=mask, score=0.5).items() if k != "bbox"},
    ]
    result = evaluate_detections(gt, dets, iou_type="segm")
    assert result.metrics["AP50"] == pytest.approx(50.5, abs=0.6)  # one of two images found


def test_file_name_image_ids_from_detect_map_to_the_ground_truth():
    by_id = evaluate_detections(_gt(), [_det(), _det(image_id=2, bbox=[2, 2, 8, 8])])
    by_name = evaluate_detections(
        _gt(),
        [_det(image_id="val/images/a.png"), _det(image_id="b.png", bbox=[2, 2, 8, 8])],
    )
    assert by_name.metrics == by_id.metrics and by_id.metrics["AP"] == pytest.approx(100.0)


def test_detect_without_gt_chains_into_eval_by_category_name():
    """`ovdet detect` without --gt writes the image's path and its vocabulary's index + 1 as
    category_id: the names decide, whatever order the vocabulary had."""
    gt = _gt()
    gt["categories"] = [
        {"id": 1, "name": "a", "frequency": "f"},
        {"id": 7, "name": "traffic_cone", "synonyms": ["pylon"], "frequency": "r"},
    ]
    gt["annotations"][1]["category_id"] = 7
    by_id = evaluate_detections(gt, [_det(), _det(image_id=2, category_id=7, bbox=[2, 2, 8, 8])])
    # the vocabulary "pylon, a": category_id 1 is "pylon", 2 is "a"
    named = [
        _det(image_id="a.png", category_id=2, category_name="a"),
        _det(image_id="b.png", category_id=1, category_name="Pylon", bbox=[2, 2, 8, 8]),
    ]
    assert evaluate_detections(gt, named).metrics == by_id.metrics
    assert by_id.metrics["AP"] == pytest.approx(100.0)
    spaced = [dict(named[0]), {**named[1], "category_name": "traffic  cone"}]
    assert evaluate_detections(gt, spaced).metrics == by_id.metrics
    # a name alone (no category_id) is read too; integer image ids keep their category_id
    only_name = [{k: v for k, v in d.items() if k != "category_id"} for d in named]
    assert evaluate_detections(gt, only_name).metrics == by_id.metrics
    kept = load_detections([_det(category_name="pylon")], gt)
    assert kept[0]["category_id"] == 1  # with an integer image id the id decides, as in COCO
    with pytest.raises(FormatError, match="detection 0 names category 'zebra', which the"):
        evaluate_detections(gt, [_det(image_id="a.png", category_name="zebra")])


def test_whole_float_ids_are_ids_and_fractional_ones_are_refused():
    by_int = evaluate_detections(_gt(), [_det(), _det(image_id=2, bbox=[2, 2, 8, 8])])
    floats = [_det(image_id=1.0, category_id=1.0), _det(image_id=2.0, bbox=[2, 2, 8, 8])]
    assert evaluate_detections(_gt(), floats).metrics == by_int.metrics
    with pytest.raises(FormatError, match="image_id 1.5"):
        evaluate_detections(_gt(), [_det(image_id=1.5)])


def test_lvis_without_negative_ids_warns(caplog):
    gt = _gt()
    gt["categories"].append({"id": 2, "name": "b", "frequency": "f"})
    wrong = [_det(category_id=2)]
    result = evaluate_detections(gt, [_det(), *wrong], protocol="lvis")
    assert any("neg_category_ids" in n for n in result.notes)
    assert any("federated" in r.getMessage() for r in caplog.records)
    for im in gt["images"]:
        im["neg_category_ids"] = [2]
    assert not evaluate_detections(gt, [_det()], protocol="lvis").notes
