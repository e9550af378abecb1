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
