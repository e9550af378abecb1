import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ovdet.cli.main import main


@pytest.fixture
def photo(tmp_path):
    g = np.random.default_rng(0)
    arr = np.kron(g.integers(0, 256, (6, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path


def common(tiny_clip_dir, tmp_path):
    return ["--clip", str(tiny_clip_dir), "--cache-dir", str(tmp_path / "cache")]


def test_classify(photo, tiny_clip_dir, tmp_path, capsys):
    out = tmp_path / "c.json"
    code = main(
        [
            "classify",
            str(photo),
            str(photo),
            "--vocab",
            "cat, dog, traffic cone",
            "--top-k",
            "2",
            "--json",
            str(out),
            *common(tiny_clip_dir, tmp_path),
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert len(results) == 2 and len(results[0]["top"]) == 2
    assert results[0]["top"][0]["probability"] >= results[0]["top"][1]["probability"]
    assert "photo.png" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["crop", "dense"])
def test_recognize_writes_json_and_png(photo, tiny_clip_dir, tmp_path, method, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"xyxy": [[0, 0, 30, 30], [20, 10, 60, 45]]}))
    code = main(
        [
            "recognize",
            str(photo),
            "--boxes",
            str(boxes),
            "--vocab",
            "apple, pear",
            "--attributes",
            "red, green",
            "--method",
            method,
            "--query",
            "red apple, green pear",
            "--out",
            str(tmp_path / "out"),
            *common(tiny_clip_dir, tmp_path),
        ]
    )
    assert code == 0
    entries = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert [e["bbox"] for e in entries] == [[0, 0, 30, 30], [20, 10, 40, 35]]
    assert all(
        e["category_name"] in {"red apple", "green apple", "red pear", "green pear"}
        for e in entries
    )
    picture = Image.open(tmp_path / "out" / "photo.png")
    assert picture.size[0] >= 64 and picture.mode == "RGB"
    assert "'red apple'" in capsys.readouterr().out


@pytest.mark.parametrize("form", ["inline", "bare list file"])
def test_recognize_takes_boxes_inline_or_as_a_bare_list(photo, tiny_clip_dir, tmp_path, form):
    xyxy = [[0, 0, 30, 30], [20, 10, 60, 45]]
    if form == "inline":
        boxes = "; ".join(",".join(str(v) for v in b) for b in xyxy)
    else:
        boxes = str(tmp_path / "b.json")
        (tmp_path / "b.json").write_text(json.dumps(xyxy))
    args = ["recognize", str(photo), "--boxes", boxes, "--vocab", "apple, pear"]
    assert main([*args, "--out", str(tmp_path / "o"), *common(tiny_clip_dir, tmp_path)]) == 0
    entries = json.loads((tmp_path / "o" / "photo.json").read_text())
    assert [e["bbox"] for e in entries] == [[0, 0, 30, 30], [20, 10, 40, 35]]


def test_a_box_partly_outside_the_image_may_start_with_a_minus(photo, tiny_clip_dir, tmp_path):
    """`--boxes -5,-4,30,30` (argparse alone takes "-5,..." for an option) is clipped to the
    image like any box that reaches past its edge."""
    args = ["recognize", str(photo), "--boxes", "-5,-4,30,30", "--vocab", "apple, pear"]
    assert main([*args, "--out", str(tmp_path / "o"), *common(tiny_clip_dir, tmp_path)]) == 0
    entries = json.loads((tmp_path / "o" / "photo.json").read_text())
    assert [e["bbox"] for e in entries] == [[0, 0, 30, 30]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vocab", "cat", "--boxes", "1,2,3"], "box 0 must be four finite numbers"),
        (["--vocab", "cat", "--boxes", "1,2,3,nan"], "box 0 must be four finite numbers"),
        (["--vocab", "cat", "--boxes", "missing.json"], "not found"),
        (["--vocab", ""], "vocabulary is empty"),
        (["--vocab", "cat,,dog"], "empty entry"),
        (["--vocab", "cat", "--boxes", "BOXES_BAD"], "outside"),
        (["--vocab", "cat", "--image", "missing.png"], "image file not found"),
        (["--vocab", "cat", "--query", " , "], "--query names no phrase: ' , '"),
    ],
)
def test_errors_are_one_line(photo, tiny_clip_dir, tmp_path, capsys, args, message):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"xyxy": [[0, 0, 10, 10]]}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"xyxy": [[500, 500, 600, 600]]}))
    image = str(photo)
    if "--image" in args:
        image = str(tmp_path / args[args.index("--image") + 1])
        args = args[: args.index("--image")]
    if "--boxes" in args:
        args = [a if a != "BOXES_BAD" else str(bad) for a in args]
    else:
        args = [*args, "--boxes", str(boxes)]
    code = main(["recognize", image, *args, *common(tiny_clip_dir, tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_console_script_without_weights_prints_one_line(photo, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    exe = os.path.join(os.path.dirname(sys.executable), "ovdet")
    proc = subprocess.run(
        [exe, "classify", str(photo), "--vocab", "cat, dog"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert (
        lines == [lines[0]]
        and "openai/clip-vit-base-patch16" in lines[0]
        and "Traceback" not in proc.stderr
    )


def test_list_models_names_every_bundled_model(capsys):
    import ovdet

    models = {m["name"]: m for m in ovdet.list_models()}
    assert set(models) == {
        "shapes-clip",
        "shapes-clip-v2",
        "shapes-sam",
        "shapes-vild",
        "shapes-vild-text",
        "shapes-regionspot",
        "shapes-sam2clip",
        "shapes-ovsam",
    }
    assert all(m["present"] for m in models.values())
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in models) and "openai/clip-vit-base-patch16" in out


def test_recognize_with_a_vild_checkpoint_names_boxes_as_its_api_does(tmp_path):
    """`ovdet recognize --model shapes-vild`: ViLD's RoI heads name the given boxes, as
    `ViLDDetector.recognize_regions` does."""
    import numpy as np
    from PIL import Image

    from ovdet.api import load
    from ovdet.data.shapes.world import render_scene
    from ovdet.ops.masks import masks_to_boxes

    scene = render_scene(np.random.default_rng(3), (128, 128), max_objects=3, min_objects=2)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    boxes = masks_to_boxes(np.stack(scene.masks)).tolist()
    inline = "; ".join(",".join(f"{v:g}" for v in b) for b in boxes)
    vocab = "circle, square, triangle, star, crescent, ring"
    args = ["recognize", str(tmp_path / "scene.png"), "--boxes", inline, "--vocab", vocab]
    assert main([*args, "--model", "shapes-vild", "--out", str(tmp_path / "o"), "--no-cache"]) == 0
    got = json.loads((tmp_path / "o" / "scene.json").read_text())
    want = load("shapes-vild", text_cache=None).recognize_regions(
        str(tmp_path / "scene.png"), boxes, vocab
    )
    assert [e["category_id"] - 1 for e in got] == want.labels.tolist()
    assert [e["score"] for e in got] == pytest.approx(want.scores.tolist(), abs=1e-4)
