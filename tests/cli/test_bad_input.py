"""Every bad input a hostile but fair user tries gets one line on stderr and exit status 2, and
leaves nothing half-written. One table per kind of input; each row is (arguments, message)."""

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovdet.cli.main import main


@pytest.fixture
def photo(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def boxes(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"xyxy": [[2, 2, 30, 30], [10, 5, 60, 40]]}))
    return path


def run(args, capsys):
    """(exit status, the stderr lines) of `ovdet args`."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse refuses: status 2, usage + one error line
        code = e.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return code, err


def recognize(photo, boxes, clip):
    """The start of an `ovdet recognize` command line with the tiny CLIP."""
    return ["recognize", photo, "--boxes", boxes, "--vocab", "a, b", "--clip", clip]


def one_line(err, message):
    """The error is one `ovdet: error:` line (argparse adds its usage line above its own)."""
    errors = [ln for ln in err if "error:" in ln]
    assert len(errors) == 1 and message in errors[0], err
    assert not any("Traceback" in ln for ln in err), err


VILD = "train vild --gt {gt} --images {tmp} --out {tmp}/r"
SPOT = "train regionspot --cache {tmp} --gt {gt} --out {tmp}/r"
CACHE = "cache --gt {gt} --images {tmp} --out {tmp}/c"
RECOGNIZE = "recognize {photo} --boxes {boxes} --vocab a,b"
NUMERIC = [  # (command line, message); {photo} etc. are filled in, then split on spaces
    (f"{RECOGNIZE} --method dense --dense-size 13 --clip shapes-clip", "multiple of 8"),
    (f"{RECOGNIZE} --dense-size -8", "an integer > 0"),
    ("classify {photo} --vocab a,b --top-k 0", "an integer > 0"),
    ("classify {photo} --vocab a,b --attributes red", "unrecognized"),
    ("detect {photo} --model shapes-regionspot --vocab a --points-per-side 0", "an integer > 0"),
    ("detect {photo} --model shapes-vild --vocab a --min-score nan", "a number in [0, 1]"),
    (f"{CACHE} --shard-size -2", "an integer > 0"),
    (f"{CACHE} --clip-size 0", "an integer > 0"),
    ("eval-regions --gt {gt} --images {tmp} --labels-per-box 0", "an integer > 0"),
    (f"{VILD} --lr nan", "a finite number"),
    (f"{VILD} --batch-size 0", "batch-size must be > 0"),
    (f"{VILD} --checkpoint-every 0", "checkpoint-every must be > 0"),
    (f"{VILD} --steps -1", "steps must be >= 0"),
    (f"{VILD} --templates nope", "invalid choice"),
    (f"{VILD} --val-gt {{gt}}", "--val-gt and --val-images go together"),
    (f"{VILD} --freeze-backbone", "freeze_backbone needs init"),
    (f"{SPOT} --heads 0", "heads must be > 0"),
    (f"{SPOT} --depth 0", "depth must be > 0"),
    (f"{SPOT} --seed -1", "seed must be >= 0"),
    ("shapes generate --out {tmp}/w --size 0", "size must be >= 32"),
    ("shapes generate --out {tmp}/w --max-objects 0", "max-objects must be > 0"),
    ("shapes generate --out {tmp}/w --seed -1", "seed must be >= 0"),
    ("shapes train-sam --out {tmp}/s --side 0", "unrecognized"),
    ("shapes train-sam --out {tmp}/s --size 0", "size must be a multiple of 8"),
    ("shapes eval-clip --data {tmp}/nowhere", "nowhere: no such folder"),
    ("shapes eval-ovsam --model shapes-clip", "not an Open-Vocabulary SAM checkpoint"),
    ("shapes eval-ovsam --model shapes-vild", "is a vild checkpoint, not an Open-Vocabulary SAM"),
    ("classify {photo} --vocab a,b --device bogus", "unknown device"),
    ("classify {photo} --vocab a,b --device cuda:7", "device 'cuda:7'"),
]


def fill(line, tmp_path, photo, boxes, gt):
    return line.format(photo=photo, boxes=boxes, tmp=tmp_path, gt=gt).split()


@pytest.fixture
def gt(tmp_path):
    path = tmp_path / "gt.json"
    data = {
        "images": [{"id": 1, "file_name": "photo.png", "height": 48, "width": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20]}],
        "categories": [{"id": 1, "name": "circle"}],
    }
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("line, message", NUMERIC)
def test_numeric_and_device_options_are_checked(line, message, tmp_path, photo, boxes, gt, capsys):
    import torch

    if "cuda:7" in line and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    code, err = run(fill(line, tmp_path, photo, boxes, gt), capsys)
    assert code == 2
    one_line(err, message)


def test_vocabulary_and_split_of_forty_classes_are_not_paths(tmp_path, photo, boxes, capsys):
    names = ", ".join(f"category number {i}" for i in range(40))  # ~700 characters
    assert len(names) > 255
    from ovdet.vocab.parse import parse_vocabulary

    assert len(parse_vocabulary(names)) == 40
    assert parse_vocabulary("AC/DC, cat").names == ("AC/DC", "cat")
    assert parse_vocabulary("AC/DC").names == ("AC/DC",)
    from ovdet.eval.data import make_split

    gt = {"categories": [{"id": i, "name": f"category number {i}"} for i in range(40)]}
    assert len(make_split(names, gt).novel) == 40


def test_bad_clip_folders_are_one_line(tmp_path, photo, tiny_clip_dir, capsys):
    import shutil

    cases = {}
    cases["no config"] = tmp_path / "a"
    cases["no config"].mkdir()
    (cases["no config"] / "model.safetensors").write_bytes(b"x")
    bad = tmp_path / "b"
    shutil.copytree(tiny_clip_dir, bad)
    (bad / "config.json").write_text("{not json")
    cases["bad config"] = bad
    truncated = tmp_path / "c"
    shutil.copytree(tiny_clip_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    cases["truncated"] = truncated
    for what, folder in cases.items():
        code, err = run(["classify", photo, "--vocab", "a, b", "--clip", folder], capsys)
        assert code == 2, what
        one_line(err, str(folder))


def test_a_clip_checkpoint_is_not_taken_for_a_sam(tmp_path, capsys, gt):
    code, err = run(
        [
            "cache",
            "--gt",
            gt,
            "--images",
            tmp_path,
            "--sam",
            "shapes-clip",
            "--clip",
            "shapes-clip",
            "--out",
            tmp_path / "cache",
        ],
        capsys,
    )
    assert code == 2
    one_line(err, "not a SAM")
    assert not (tmp_path / "cache").exists()


def test_damaged_caches_are_one_line(tmp_path, capsys):
    import torch

    from ovdet.train.feature_cache import ShardedCache

    cache = ShardedCache(tmp_path / "c", shard_size=2)
    cache.build([1, 2, 3], lambda i: {"x": torch.ones(3) * i}, progress=False)
    shard = tmp_path / "c" / "shard_00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:40])
    from ovdet.errors import FormatError

    with pytest.raises(FormatError, match="damaged"):
        ShardedCache(tmp_path / "c").reader()
    (tmp_path / "c" / "index.json").write_text("{broken")
    with pytest.raises(FormatError, match="cache index .* is damaged"):
        ShardedCache(tmp_path / "c")


def test_file_system_refusals_name_the_path(tmp_path, photo, boxes, tiny_clip_dir, capsys):
    common = ["--vocab", "a, b", "--clip", tiny_clip_dir, "--no-cache"]
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    code, err = run(["recognize", photo, "--boxes", boxes, *common, "--out", a_file], capsys)
    assert code == 2
    one_line(err, str(a_file))
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        code, err = run(["recognize", photo, "--boxes", boxes, *common, "--out", ro], capsys)
        assert code == 2
        one_line(err, "Permission denied")


def test_a_read_only_text_cache_warns_once_and_the_result_stands(
    tmp_path, photo, boxes, tiny_clip_dir, capsys, monkeypatch, caplog
):
    """The cache folder refuses every write; the results are written anyway and equal a run
    without a cache."""
    from ovdet.io import atomic

    cache, real = tmp_path / "cache", atomic.tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir).is_relative_to(cache):
            raise PermissionError(13, "Permission denied", str(cache))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    command = recognize(photo, boxes, tiny_clip_dir)
    code, err = run([*command, "--cache-dir", cache, "--out", tmp_path / "out"], capsys)
    assert code == 0
    warnings = [r.getMessage() for r in caplog.records if "cache not written" in r.getMessage()]
    assert len(warnings) == 1 and "Permission denied" in warnings[0], caplog.records
    assert not any(p.is_file() for p in cache.rglob("*"))  # nothing was cached
    code, err = run([*command, "--no-cache", "--out", tmp_path / "plain"], capsys)
    assert code == 0
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    assert any(n.suffix == ".json" for n in written) and written == sorted(
        p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*")
    )
    for name in written:
        if name.suffix == ".json":
            want = json.loads((tmp_path / "plain" / name).read_text())
            assert json.loads((tmp_path / "out" / name).read_text()) == want, name


def test_extreme_aspect_ratios_are_refused_or_bounded(tmp_path, tiny_clip_dir, capsys):
    boxes = tmp_path / "strip-boxes.json"
    boxes.write_text(json.dumps({"xyxy": [[0, 0, 100, 5]]}))
    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((5, 3000, 3), np.uint8)).save(strip)
    code, err = run(
        ["classify", strip, "--vocab", "a, b", "--clip", tiny_clip_dir, "--no-cache"], capsys
    )
    assert code == 2
    one_line(err, "aspect ratio 600:1")
    code, err = run(
        [
            "recognize",
            strip,
            "--boxes",
            boxes,
            "--vocab",
            "a, b",
            "--method",
            "dense",
            "--clip",
            tiny_clip_dir,
            "--no-cache",
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 2 and not (tmp_path / "o").exists()
    one_line(err, "aspect ratio 600:1")
    import torch

    from ovdet.types import Regions
    from ovdet.viz import MAX_SIDE, draw_regions

    picture = draw_regions(
        torch.zeros(3, 5, 3000, dtype=torch.uint8),
        Regions(torch.tensor([[0.0, 0, 100, 5]]), (5, 3000), labels=torch.tensor([0])),
        ["a"],
    )
    assert max(picture.size) <= MAX_SIDE and picture.size[0] > picture.size[1]


def test_recognize_writes_nothing_when_drawing_fails(
    tmp_path, photo, boxes, tiny_clip_dir, capsys, monkeypatch
):
    def broken(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "photo.png"))

    monkeypatch.setattr("ovdet.viz.encode_png", broken)
    code, err = run(
        [
            *recognize(photo, boxes, tiny_clip_dir),
            "--no-cache",
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert code == 2
    one_line(err, "No space left on device")
    assert not (tmp_path / "out" / "photo.json").exists()


def test_outputs_never_replace_an_input(tmp_path, photo, boxes, gt, capsys):
    """An --out that would write over the photo, the ground truth, the detections being scored or
    the input images' own folder is refused before any work, and every input is left as it was."""
    folder = photo.parent
    pictures = folder / "pictures"
    pictures.mkdir()
    Image.open(photo).save(pictures / "photo.png")
    dt = tmp_path / "metrics.json"
    dt.write_text("[]")
    vild = ["--model", "shapes-vild", "--vocab", "circle, star"]
    cases = [
        (["detect", photo, *vild, "--out", folder], "photo.png over the input"),
        (["detect", photo, *vild, "--out", tmp_path / "found.json"], "writes a folder"),
        (["recognize", photo, "--boxes", boxes, "--vocab", "a", "--out", folder], "over the input"),
        (
            ["detect", "--images", folder, "--gt", gt, "--model", "shapes-vild", "--vocab", gt]
            + ["--out", gt],
            "gt.json over the input",
        ),
        (["detect", "--images", pictures, *vild, "--out", folder / "r.json"], "--draw would"),
        (["eval", "--gt", gt, "--dt", dt, "--out", tmp_path], "metrics.json over the input"),
    ]
    before = {p: p.read_bytes() for p in (photo, gt, dt, boxes, pictures / "photo.png")}
    for args, message in cases:
        code, err = run(args, capsys)
        assert code == 2, args
        one_line(err, message)
    assert {p: p.read_bytes() for p in before} == before
    # the same inputs with an --out elsewhere run
    assert run(["detect", photo, *vild, "--out", tmp_path / "out"], capsys)[0] == 0


def test_training_sets_without_base_boxes_are_refused_before_any_model_loads(tmp_path, gt, capsys):
    data = json.loads(gt.read_text())
    cases = [
        ({**data, "annotations": []}, [], "no annotation of its 1 base categories"),
        ({**data, "ovd": {"base": []}}, [], "ovd.base lists no category"),
        ({**data, "ovd": {"base": [7]}}, [], "must list category ids of the file, got [7]"),
        (data, ["--novel", "circle"], "--novel circle holds out every category"),
        (data, ["--base", "circle"], "--novel circle holds out every category"),  # deprecated
    ]
    for i, (bad, extra, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(bad))
        args = ["train", "vild", "--gt", path, "--images", tmp_path, "--out", tmp_path / "r"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, err = run([*args, "--clip", "not-a-model", *extra], capsys)  # refused first
        assert code == 2
        one_line(err, message)
        assert not (tmp_path / "r").exists()
        renamed = [w for w in caught if "renamed --novel" in str(w.message)]
        assert len(renamed) == (extra[:1] == ["--base"])


def test_serve_refuses_a_bad_or_busy_port_before_loading_models(capsys):
    import socket

    code, err = run(["serve", "--port", "99999"], capsys)
    assert code == 2
    one_line(err, "a port number in 1-65535")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run(["serve", "--port", port, "--model", "no-such-model"], capsys)
    assert code == 2
    one_line(err, f"cannot serve on 127.0.0.1:{port}")  # not the model error: checked first


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path, photo, gt, capsys):
    """Batches are drawn with replacement: a --batch-size of 100,000 on a small set would decode
    that many images a step (it looked like a hang)."""
    args = ["train", "vild", "--gt", gt, "--images", tmp_path, "--clip", "shapes-clip"]
    code, err = run([*args, "--out", tmp_path / "r", "--batch-size", "100000"], capsys)
    assert code == 2
    one_line(err, "--batch-size 100000 is larger than the 1 training images")
    assert not (tmp_path / "r").exists()


def test_a_dataset_pass_over_the_wrong_folder_is_refused_before_any_work(tmp_path, gt, capsys):
    """--gt lists photo.png; a folder that holds none of its images is the wrong folder (it
    wrote an empty results file and a skipped list of every image, then failed)."""
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    args = ["detect", "--images", wrong, "--gt", gt, "--model", "shapes-vild", "--vocab", gt]
    code, err = run([*args, "--out", tmp_path / "r.json"], capsys)
    assert code == 2
    one_line(err, "none of the 1 images")
    assert not list(tmp_path.glob("r*.json"))


def test_a_bad_backbone_is_one_line_before_any_data_loads(tmp_path, tiny_clip_dir, capsys):
    """An unknown hub id offline, a checkpoint that is not a backbone, stages it lacks, and a
    --gt that does not exist: the backbone is refused first, nothing is written."""
    from tiny_backbones import save_tiny_backbone

    resnet = save_tiny_backbone(tmp_path / "resnet", "resnet")
    base = ["train", "vild", "--gt", tmp_path / "missing.json", "--images", tmp_path]
    base += ["--out", tmp_path / "r"]
    cases = [
        (["--backbone", "nobody/no-such-backbone"], "not cached and the hub is unreachable"),
        (["--backbone", tiny_clip_dir], "'clip' checkpoint is not a backbone"),
        (["--backbone", resnet, "--out-features", "stage2,stage9"], "are not stages"),
        (["--backbone", resnet, "--neck", "c5"], "argument --neck: invalid choice"),
        (["--backbone", "shapes", "--lsj"], "--lsj needs the real-scale data pipeline"),
        (["--backbone", resnet, "--precision", "fp16"], "fp16 needs a CUDA device"),
        (["--backbone", resnet, "--aspect-groups", "--lsj"], "use it without --lsj"),
        (["--backbone", "shapes", "--short-side", "96"], "--short-side needs the real-scale"),
    ]
    for extra, message in cases:
        code, err = run([*base, *extra], capsys)
        assert code == 2, extra
        one_line(err, message)
        assert not (tmp_path / "r").exists()


def test_one_process_trainers_refuse_torchrun(tmp_path, capsys, monkeypatch):
    """Under torchrun every process would write the same checkpoint: one line, nothing written."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["train", "regionspot", "--gt", tmp_path / "gt.json", "--out", tmp_path / "r"]
    code, err = run([*args, "--cache", tmp_path], capsys)
    assert code == 2
    one_line(err, "ovdet train regionspot runs in one process (2 were started)")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "error",
    [
        "torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 24.00 GiB')",
        "RuntimeError('[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can\\'t allocate "
        "memory: you tried to allocate 25769803776 bytes')",
        "MemoryError()",
    ],
)
def test_an_allocation_failure_is_one_line(error, monkeypatch, capsys):
    """Out of memory on the GPU or the CPU: one line that says what to lower, exit 2; any other
    RuntimeError is still raised (a bug must keep its traceback)."""
    import torch

    from ovdet.cli import shapes

    def fail(args):
        raise eval(error, {"torch": torch})

    monkeypatch.setattr(shapes, "run_train_sam2clip", fail)
    assert main(["shapes", "train-sam2clip", "--out", "never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ovdet: error: out of memory") and err.count("\n") == 1, err
    assert "--batch-size" in err

    def bug(args):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(shapes, "run_train_sam2clip", bug)
    with pytest.raises(RuntimeError, match="do not match"):
        main(["shapes", "train-sam2clip", "--out", "never"])


@pytest.mark.parametrize(
    "dataset, message",
    [
        ({"images": [{"id": 1, "file_name": "photo.png"}], "annotations": [5]},
         "annotations[0] must be an object, got int 5"),
        ({"images": [{"file_name": "photo.png"}], "annotations": []},
         "images[0] has id None"),
        ({"images": "photo.png", "annotations": []}, "'images' must be a list"),
    ],
)  # fmt: skip
def test_boxes_datasets_with_malformed_entries_are_one_line(dataset, message, tmp_path, photo,
                                                            tiny_clip_dir, capsys):  # fmt: skip
    """`recognize --boxes` and a dataset pass's `--proposals` read COCO datasets through one
    check: a non-object annotation, an image without an id, a non-list are one line."""
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(dataset))
    code, err = run(recognize(photo, path, tiny_clip_dir), capsys)
    assert code == 2
    one_line(err, message)
    from ovdet.errors import FormatError
    from ovdet.io.coco import BoxesByImage

    with pytest.raises(FormatError, match=re.escape(message)):
        BoxesByImage(path)


def test_a_malformed_compressed_rle_is_one_line(tmp_path, gt, capsys):
    """`ovdet eval --iou-type segm` on a results file whose RLE counts string does not decode
    (it was a RuntimeError traceback from the evaluator's decoder)."""
    data = json.loads(gt.read_text())
    data["annotations"][0]["segmentation"] = [[2, 2, 22, 2, 22, 22, 2, 22]]
    data["annotations"][0]["area"] = 400
    (tmp_path / "segm.json").write_text(json.dumps(data))
    entry = {"image_id": 1, "category_id": 1, "score": 0.9}
    for counts in ("!!!garbage", "0PP"):  # bad characters; a run cut short
        dt = [{**entry, "segmentation": {"size": [48, 64], "counts": counts}}]
        (tmp_path / "dt.json").write_text(json.dumps(dt))
        code, err = run(["eval", "--gt", tmp_path / "segm.json", "--dt", tmp_path / "dt.json",
                         "--iou-type", "segm", "--out", tmp_path / "ev"], capsys)  # fmt: skip
        assert code == 2
        one_line(err, "malformed compressed RLE")
    assert not (tmp_path / "ev").exists()  # nothing written
