"""`ovdet detect --images DIR --gt val.json --out results.json --eval`: the dataset pass with the
bundled shapes-vild, against the per-image path and `ovdet eval`."""

import json

import pytest
import torch

from ovdet.cli.main import main
from ovdet.data.shapes.generate import WorldConfig, generate_world
from tests.cli.test_bad_input import one_line, run


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    zeros = dict(det_train=0, det_style=0, det_captions=0, det_val_uniform=0)
    world = generate_world(
        tmp_path_factory.mktemp("w"),
        WorldConfig(seed=5, captions=1, det_val=5, det_captions_companion=0, size=96, **zeros),
    )
    return world / "det-val"


def test_dataset_pass_equals_per_image_detect_and_scores_like_ovdet_eval(val, tmp_path, capsys):
    gt = str(val / "annotations.json")
    common = ["--model", "shapes-vild", "--vocab", gt, "--gt", gt]
    out = tmp_path / "run" / "results.json"
    code = main(
        [
            "detect",
            "--images",
            str(val),
            *common,
            "--out",
            str(out),
            "--batch-size",
            "3",
            "--draw",
            "2",
            "--eval",
            "--protocol",
            "lvis",
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    ids = {im["id"] for im in json.loads((val / "annotations.json").read_text())["images"]}
    assert results and {r["image_id"] for r in results} == ids  # the dataset's integer ids
    assert len(list((tmp_path / "run" / "pictures").glob("*.png"))) == 2
    assert (tmp_path / "run" / "eval.png").stat().st_size > 0
    # batches of 3 give what one image at a time gives
    images = sorted(str(p) for p in (val / "images").glob("*.png"))
    assert main(["detect", *images, *common, "--out", str(tmp_path / "single")]) == 0
    single = json.loads((tmp_path / "single" / "detections.json").read_text())
    assert sorted(results, key=json.dumps) == sorted(single, key=json.dumps)
    # --eval wrote what `ovdet eval` computes from the file
    assert (
        main(
            [
                "eval",
                "--gt",
                gt,
                "--dt",
                str(out),
                "--protocol",
                "lvis",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (out.parent, tmp_path / "m")]
    # AP is in percent: measured 68.6 (the old floor, 0.2, was a fifth of one percent)
    assert metrics[0] == metrics[1] and metrics[0]["metrics"]["AP"] >= 50


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "{val}/nope"], "image folder not found"),
        (["--images", "{val}/annotations.json"], "is a file"),
        (["--images", "{val}", "--eval"], "--eval needs --gt"),
        (["{val}/images/000000.png", "--images", "{val}"], "not both"),
        (["{val}/images/000000.png", "--eval"], "--eval scores a dataset pass"),
        (["--images", "{val}", "--workers", "-1"], "argument --workers"),
        ([], "give image files, or a dataset"),
    ],
)
def test_dataset_pass_bad_input_is_one_line(val, tmp_path, capsys, args, message):
    code, err = run(
        [
            "detect",
            *(a.format(val=val) for a in args),
            "--model",
            "shapes-vild",
            "--vocab",
            "circle",
            "--out",
            tmp_path / "o.json",
        ],
        capsys,
    )
    assert code == 2
    one_line(err, message)
    assert not (tmp_path / "o.json").exists()


def test_eval_regions_with_a_trained_model_names_gt_boxes(val, tmp_path, capsys):
    """`ovdet eval-regions --model shapes-vild`: the ViLD heads name the ground-truth boxes (mapped
    into the letterboxed input: these 96 px scenes are scaled to the checkpoint's 128)."""
    import ovdet
    from ovdet.eval.recognition import box_top1, recognition_detections
    from ovdet.io.images import load_image
    from ovdet.types import Regions
    from ovdet.vocab.parse import vocabulary_from_categories

    gt_path = val / "annotations.json"
    args = ["eval-regions", "--gt", gt_path, "--images", val, "--protocol", "lvis"]
    assert main([str(a) for a in [*args, "--model", "shapes-vild", "--out", tmp_path]]) == 0
    ap = json.loads((tmp_path / "metrics.json").read_text())["metrics"]["AP"]
    gt = json.loads(gt_path.read_text())
    vocab = vocabulary_from_categories(gt["categories"])
    vild, dets = ovdet.load("shapes-vild", text_cache=None), []
    cats = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    for im in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        image = load_image(val / im["file_name"])
        named = vild.recognize_regions(image, Regions(xyxy, tuple(image.shape[-2:])), vocab)
        assert named.labels.tolist() == named.data["class_scores"].argmax(1).tolist()
        dets += recognition_detections(
            im["id"], named.image_size, xyxy, named.data["class_scores"], cats
        )
    base = {c["id"] for c in gt["categories"] if c["name"] in vild.base_names}
    gt_base = {**gt, "annotations": [a for a in gt["annotations"] if a["category_id"] in base]}
    # base shapes named on their true boxes: 9 of 13 here (boxes left unscaled: 2 of 13)
    assert box_top1(gt_base, dets) >= 60
    assert ap >= 80  # percent: measured 97.9 (the old floor, 0.5, was half of one percent)
    code, err = run([*args, "--model", "shapes-clip"], capsys)
    assert code == 2
    one_line(err, "is a clip model")


def test_dataset_pass_names_another_detectors_boxes_read_once(val, tmp_path, capsys):
    """RegionSpot over a dataset with --proposals: a results file keyed by image paths (what
    `ovdet detect` writes without --gt) is read once and matched per image; images it has no
    entry for get no detections; a file of other images only is refused in one line."""
    gt = str(val / "annotations.json")
    images = sorted((val / "images").glob("*.png"))
    boxes = [
        {"image_id": str(p), "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}
        for p in images[:2]
    ]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "r.json"
    args = [
        "detect",
        "--images",
        str(val),
        "--gt",
        gt,
        "--model",
        "shapes-regionspot",
        "--vocab",
        gt,
        "--proposals",
        str(tmp_path / "boxes.json"),
    ]
    assert main([*args, "--out", str(out)]) == 0
    by_file = {
        im["id"]: im["file_name"]
        for im in json.loads((val / "annotations.json").read_text())["images"]
    }
    named = {by_file[r["image_id"]].split("/")[-1] for r in json.loads(out.read_text())}
    assert named == {p.name for p in images[:2]}
    (tmp_path / "other.json").write_text(json.dumps([{**boxes[0], "image_id": "x/none.png"}]))
    args[-1] = str(tmp_path / "other.json")
    code, err = run([*args, "--out", str(tmp_path / "o.json")], capsys)
    assert code == 2
    one_line(err, "holds boxes of none of these images")
