"""The RegionSpot chain through the command line: generate -> cache -> train -> recognize/detect."""

import json

import pytest

from ovdet.cli.main import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rscli")
    args = ["shapes", "generate", "--out", str(root / "w"), "--seed", "3", "--captions", "0"]
    assert (
        main(
            [
                *args,
                "--det-train",
                "8",
                "--det-val",
                "3",
                "--det-style",
                "0",
                "--det-captions",
                "0",
                "--det-val-uniform",
                "0",
                "--det-captions-companion",
                "0",
            ]
        )
        == 0
    )
    return root


def test_cache_train_recognize_detect(world, tiny_sam_dir, capsys):
    w, sam = world / "w", str(tiny_sam_dir)
    common = ["--sam", sam, "--clip", "shapes-clip", "--clip-size", "128"]
    for split in ("det-train", "det-val"):
        gt, images = str(w / split / "annotations.json"), str(w / split)
        args = ["cache", "--gt", gt, "--images", images, "--out", str(world / split), *common]
        assert main(args) == 0
    ckpt = world / "ckpt"
    train = ["train", "regionspot", "--cache", str(world / "det-train")]
    train += ["--gt", str(w / "det-train" / "annotations.json"), "--out", str(ckpt)]
    train += ["--steps", "4", "--batch-size", "2", "--heads", "4", "--prior", "box"]
    train += ["--val-cache", str(world / "det-val")]
    train += ["--val-gt", str(w / "det-val" / "annotations.json")]
    assert main(train) == 0
    assert "APr" in capsys.readouterr().out
    spec = json.loads((ckpt / "spec.json").read_text())
    assert spec["kind"] == "regionspot" and spec["config"]["prior"] == "box"

    val = json.loads((w / "det-val" / "annotations.json").read_text())
    image = w / "det-val" / val["images"][0]["file_name"]
    out = world / "out"
    rec = ["recognize", str(image), "--boxes", str(w / "det-val" / "annotations.json")]
    rec += ["--model", str(ckpt), "--vocab", "circle, star, heart", "--out", str(out)]
    assert main(rec) == 0
    entries = json.loads((out / f"{image.stem}.json").read_text())
    n = sum(a["image_id"] == val["images"][0]["id"] for a in val["annotations"])
    assert len(entries) == n and all("segmentation" in e for e in entries)
    assert {e["category_name"] for e in entries} <= {"circle", "star", "heart"}

    # proposals from another detector's results file (image_id = the image's stem)
    props = [{"image_id": image.stem, "category_id": 1, "bbox": [4, 4, 40, 40], "score": 0.9}]
    (world / "props.json").write_text(json.dumps(props))
    det = ["detect", str(image), "--model", str(ckpt), "--vocab", "circle, star"]
    assert main([*det, "--proposals", str(world / "props.json"), "--out", str(out)]) == 0
    assert len(json.loads((out / f"{image.stem}.json").read_text())) == 1
    assert main([*det, "--points-per-side", "4", "--out", str(out / "sam")]) == 0
    assert (out / "sam" / f"{image.stem}.png").is_file()


def test_cache_refuses_another_model_pair(world, tiny_sam_dir, capsys, monkeypatch):
    """A second model pair in one cache is refused; a SAM given by a relative path is recorded
    absolute (a RegionSpot trained on the cache then loads it from any directory), and the
    same folder given relatively from elsewhere is the same model."""
    from ovdet.train.feature_cache import ShardedCache

    w = world / "w"
    gt, images = str(w / "det-val" / "annotations.json"), str(w / "det-val")
    args = ["cache", "--gt", gt, "--images", images, "--out", str(world / "mixed")]
    monkeypatch.chdir(tiny_sam_dir.parent)
    assert main([*args, "--sam", tiny_sam_dir.name, "--clip", "shapes-clip"]) == 0
    assert ShardedCache(world / "mixed").metadata()["sam"] == str(tiny_sam_dir.resolve())
    monkeypatch.chdir(world)
    assert main([*args, "--sam", str(tiny_sam_dir), "--clip", "shapes-clip"]) == 0  # resumes
    assert main([*args, "--sam", "shapes-sam", "--clip", "shapes-clip"]) == 2
    assert "use another --out" in capsys.readouterr().err


def test_cache_skips_an_unreadable_image_and_keeps_the_rest(world, tiny_sam_dir, tmp_path, caplog):
    import shutil

    from ovdet.train.feature_cache import ShardedCache

    val = tmp_path / "val"
    shutil.copytree(world / "w" / "det-val", val)
    gt = json.loads((val / "annotations.json").read_text())
    broken = val / gt["images"][1]["file_name"]
    broken.write_bytes(b"not an image")
    args = [
        "cache",
        "--gt",
        str(val / "annotations.json"),
        "--images",
        str(val),
        "--sam",
        str(tiny_sam_dir),
        "--clip",
        "shapes-clip",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    assert f"skipped {broken}" in caplog.text
    ids = {im["id"] for im in gt["images"]} - {gt["images"][1]["id"]}
    assert ShardedCache(tmp_path / "c").done() == {str(i) for i in ids}


def test_detect_takes_a_moved_sam_for_a_regionspot(world, tmp_path):
    """`detect --sam FOLDER` loads a RegionSpot's SAM from elsewhere (its checkpoint moved):
    the same weights from a copied folder give the same detections; a ViLD refuses it."""
    import shutil

    from ovdet.models.bundled import checkpoint_folder

    shutil.copytree(checkpoint_folder("shapes-sam"), tmp_path / "moved-sam")
    image = sorted((world / "w" / "det-val" / "images").glob("*.png"))[0]
    base = ["detect", str(image), "--model", "shapes-regionspot", "--vocab", "circle, star",
            "--points-per-side", "8", "--no-cache"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--sam", str(tmp_path / "moved-sam"), "--out", str(tmp_path / "b")]) == 0
    a, b = ((tmp_path / d / "detections.json").read_text() for d in ("a", "b"))
    assert a == b and json.loads(a)
    vild = ["detect", str(image), "--model", "shapes-vild", "--vocab", "circle", "--sam", "x"]
    assert main([*vild, "--out", str(tmp_path / "c")]) == 2
