import json

from PIL import Image

from ovdet.cli.main import main


def test_generate_command(tmp_path, capsys):
    code = main(
        [
            "shapes",
            "generate",
            "--out",
            str(tmp_path / "w"),
            "--seed",
            "1",
            "--captions",
            "20",
            "--det-train",
            "6",
            "--det-val",
            "4",
            "--det-style",
            "3",
            "--det-captions",
            "3",
            "--det-val-uniform",
            "2",
            "--det-captions-companion",
            "0",
            "--size",
            "96",
        ]
    )
    assert code == 0
    val = json.loads((tmp_path / "w" / "det-val" / "annotations.json").read_text())
    assert len(val["images"]) == 4 and val["images"][0]["width"] == 96
    style = json.loads((tmp_path / "w" / "det-style" / "annotations.json").read_text())
    assert len(style["images"]) == 3 and style["images"][0]["width"] == 96
    assert json.loads((tmp_path / "w" / "categories.json").read_text())["config"]["seed"] == 1


def test_demo_runs_offline_with_bundled_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the tables to the terminal's width
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "novel" in out and "crop (p)" in out and "RegionSpot (sigmoid)" in out
    assert "OV-SAM click (p)" in out
    for picture in ("regionspot.png", "ovsam.png"):
        assert Image.open(tmp_path / "demo" / picture).size[0] >= 480
    entries = json.loads((tmp_path / "demo" / "recognized.json").read_text())
    assert len(entries) >= 3 and all(
        " " in e["category_name"] for e in entries
    )  # "<colour> <shape>"
    assert Image.open(tmp_path / "demo" / "recognized.png").size[0] >= 480
    assert "shapes-vild detects the scene" in out
    detected = json.loads((tmp_path / "demo" / "detected.json").read_text())
    assert detected and all(0 <= e["score"] <= 1 for e in detected)
