import json

from PIL import Image
from synthetic import synthetic

from ovdet.cli.main import main
from ovdet.eval.data import make_split
from ovdet.eval.detection import evaluate_detections
from ovdet.eval.report import mean_pr_curve, metrics_table, save_method_bars, save_plots


def test_plot_and_table(tmp_path):
    gt, dets = synthetic(1)
    result = evaluate_detections(gt, dets, split=make_split("thing0", gt))
    save_plots(result, tmp_path / "eval.png")
    assert Image.open(tmp_path / "eval.png").size[0] > 1000
    assert metrics_table(result).row_count == 4  # 10 metrics, three per row
    curve = mean_pr_curve(result.precision, list(range(len(result.category_ids))))
    assert curve.shape == (101,) and curve[0] >= curve[-1]


def test_cli_eval_writes_metrics_and_picture(tmp_path, capsys):
    gt, dets = synthetic(2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    code = main(
        [
            "eval",
            "--gt",
            str(tmp_path / "gt.json"),
            "--dt",
            str(tmp_path / "dt.json"),
            "--split",
            "thing1,thing2",
            "--recall",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"AP", "AP50_novel", "AP50_base"} <= set(metrics["metrics"]) and "AR@100" in metrics[
        "recall"
    ]
    assert (tmp_path / "out" / "eval.png").stat().st_size > 10_000
    assert "AP50_novel" in capsys.readouterr().out


def test_cli_eval_errors_are_one_line(tmp_path, capsys):
    gt, dets = synthetic(2)
    dets[5]["image_id"] = 12345
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "detection 5 names image_id 12345" in err
    assert (
        main(["eval", "--gt", str(tmp_path / "missing.json"), "--dt", str(tmp_path / "dt.json")])
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_cli_eval_regions(tmp_path, tiny_clip_dir, capsys):
    import numpy as np

    gt, _ = synthetic(3, n_img=3)
    rng = np.random.default_rng(0)
    for im in gt["images"]:
        Image.fromarray(rng.integers(0, 255, (im["height"], im["width"], 3), dtype=np.uint8)).save(
            tmp_path / im["file_name"]
        )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    code = main(
        [
            "eval-regions",
            "--gt",
            str(tmp_path / "gt.json"),
            "--images",
            str(tmp_path),
            "--clip",
            str(tiny_clip_dir),
            "--no-cache",
            "--method",
            "dense",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    got = json.loads((tmp_path / "o" / "metrics.json").read_text())["metrics"]
    # the command is the library's dense recognizer + the COCO protocol, nothing more
    from ovdet.eval.recognition import clip_box_scorer, recognize_dataset
    from ovdet.models.clip import ClipModel
    from ovdet.vocab.embed import TextEmbedder
    from ovdet.vocab.parse import vocabulary_from_categories

    clip = ClipModel.from_pretrained(str(tiny_clip_dir))
    text = TextEmbedder(clip, "ensemble").embed(vocabulary_from_categories(gt["categories"]))
    dets = recognize_dataset(gt, tmp_path, clip_box_scorer(clip, text, "dense"), None)
    assert dets and got == evaluate_detections(gt, dets).metrics


def test_method_bars_picture(tmp_path):
    results = {
        "a method with a long name " * 4: {"AP": 80.0, "APr": 70.0, "s_per_image": 0.02},
        "another": {"AP": 10.0, "APr": 2.0, "s_per_image": 0.1},
    }
    save_method_bars(results, tmp_path / "bars.png")
    image = Image.open(tmp_path / "bars.png")
    assert image.size[0] > 1000 and len(set(image.convert("L").getdata())) > 10
