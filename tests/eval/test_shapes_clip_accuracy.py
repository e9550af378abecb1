"""The bundled shapes-clip must keep recognising shapes it was never given boxes for."""

from ovdet.eval.shapes_clip import zero_shot_report
from ovdet.models.loader import load_model


def test_bundled_clip_zero_shot_accuracy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = zero_shot_report(load_model("shapes-clip"), seed=4321, count=320)
    # acceptance on 1,600 images: >= 90 / >= 85 / >= 95; a 320-image sample keeps a small margin
    assert report.shape_top1 >= 88, report
    assert report.novel_shape_top1 >= 82, report
    assert report.colour_top1 >= 95, report


def test_bundled_clip_v2_holds_up_under_rendering_changes(monkeypatch):
    """shapes-clip-v2, trained on the styled captions: the issue's bars where it meets them, on
    a fresh 120-image sample per condition, each bar lowered by about two standard errors of a
    120-image sample (measured here: train style 96.7, style split 90.0, small 91.7, white 100,
    black 99.2, clean 98.3, JPEG q75 98.3, overlapping pair 57.5; the README's 400-image figures:
    94.5, 89.8, 91.2, 99.8, 98.8, 98.8, 98.5, 53.5; shapes-clip: 41.5, 19.8, 23.0, 25.0, 38.5,
    56.0, 56.2, 8.0; the stage-6 v2 without captions of 2-3 shapes: pair 33.0)."""
    from ovdet.eval.shapes_clip import robustness_report

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = ("white background", "black background", "clean", "train style", "style split")
    names += ("small (0.10-0.16)", "overlapping pair (both in top 2)")
    r = robustness_report(load_model("shapes-clip-v2"), seed=99, count=120, names=names)
    assert r["white background"] >= 85 and r["black background"] >= 85, r
    assert r["clean, JPEG q75"] >= r["clean"] - 5, r  # bar: within 3 on 400 images
    assert r["train style"] >= 87 and r["style split"] >= 79, r  # bars 92 and 85
    assert r["small (0.10-0.16)"] >= 68, r  # bar 75
    assert r["overlapping pair (both in top 2)"] >= 41, r  # bar 50
