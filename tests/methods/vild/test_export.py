"""`ovdet export`: the traceable graph equals ViLD.detect, and onnxruntime runs the exported file to
the torch detector's boxes and scores (shapes world, and the real-size FPN path)."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from real_scale import STEPS

from ovdet.api import checkpoint_kind, load
from ovdet.cli.main import main
from ovdet.data.coco import letterbox
from ovdet.errors import FormatError, VocabularyError
from ovdet.methods.vild.detector import ViLDDetector
from ovdet.methods.vild.export import compare, export_onnx
from ovdet.methods.vild.graph import DetectorGraph
from ovdet.methods.vild.onnx_detector import OnnxDetector
from ovdet.recognize.inputs import as_image
from ovdet.vocab.parse import as_vocabulary

pytest.importorskip("onnxruntime")

# base shapes and novel ones (the ensemble's and the classifier's novel columns are exported too)
NAMES = "circle, square, triangle, star, hexagon, cross, moon, ring, trapezoid, parallelogram"
TOLERANCE = {"box_px": 1e-3, "score": 1e-4}  # above export.CHECK_FLOOR


@pytest.fixture(scope="module")
def shapes_images(tmp_path_factory):
    """12 det-val scenes of the default world, as PNG files."""
    from PIL import Image

    from ovdet.data.shapes.generate import WorldConfig, scene_for

    root = tmp_path_factory.mktemp("scenes")
    paths = []
    for i in range(12):
        paths.append(root / f"{i}.png")
        Image.fromarray(scene_for(0, "det-val", i, WorldConfig()).image).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def shapes_vild():
    return ViLDDetector("shapes-vild", text_cache=None)


@pytest.fixture(scope="module")
def exported(shapes_vild, tmp_path_factory):
    """The bundled detector exported twice: NMS left to the caller, and NMS in the graph."""
    root = tmp_path_factory.mktemp("onnx")
    vocab = as_vocabulary(NAMES)
    for nms in (False, True):
        export_onnx(shapes_vild, vocab, root / f"nms-{nms}.onnx", nms=nms, source="shapes-vild")
    return root


def test_graph_is_detect_exactly(shapes_vild, shapes_images):
    """Eagerly, the export's graph computes what ViLD.detect does, to the bit."""
    vocab = as_vocabulary(NAMES)
    text = shapes_vild.text.embed(vocab)
    novel = vocab.novel_mask(shapes_vild.base_names)
    graph = DetectorGraph(shapes_vild.model, text, novel, nms=True).eval()
    total = 0
    for path in shapes_images:
        pixels, box = letterbox(as_image(str(path)), shapes_vild.spec["side"])
        (ref,) = shapes_vild.model.detect(pixels, [box.resized], text, novel)
        boxes, scores, labels = graph(pixels, torch.tensor(box.resized, dtype=torch.float32))
        assert torch.equal(boxes, ref.xyxy) and torch.equal(scores, ref.scores)
        assert torch.equal(labels, ref.labels)
        total += len(ref)
    assert total > 100


@pytest.mark.parametrize("nms", [False, True])
def test_onnxruntime_matches_torch(exported, shapes_vild, shapes_images, nms):
    onnx = OnnxDetector(exported / f"nms-{nms}.onnx")
    assert onnx.meta["nms"] is nms and onnx.names == list(as_vocabulary(NAMES).names)
    total = 0
    for path in shapes_images:
        n, box_px, score = compare(shapes_vild, onnx, str(path), NAMES)
        assert box_px <= TOLERANCE["box_px"] and score <= TOLERANCE["score"], (path, box_px, score)
        total += n
    assert total > 100  # the shapes are found, not an empty agreement


def test_export_of_the_fpn_path(fpn_run, tmp_path):
    """A transformers ResNet + FPN + mask head checkpoint exports (boxes only) and matches."""
    root, folders = fpn_run
    detector = ViLDDetector(folders[STEPS], text_cache=None)
    vocab = as_vocabulary("circle, square, triangle, star, moon")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(detector, vocab, tmp_path / "fpn.onnx")
    assert any("mask head" in str(w.message) for w in caught)
    onnx = OnnxDetector(tmp_path / "fpn.onnx")
    total = 0
    for path in sorted((root / "w" / "det-val" / "images").glob("*.png"))[:4]:
        n, box_px, score = compare(detector, onnx, str(path), vocab)
        assert box_px <= TOLERANCE["box_px"] and score <= TOLERANCE["score"]
        total += n
    assert total > 0


def test_vocabulary_must_match(exported, shapes_images):
    onnx = OnnxDetector(exported / "nms-False.onnx")
    with pytest.raises(VocabularyError, match="exported for 10 names"):
        onnx.detect(str(shapes_images[0]), "circle, square")
    with pytest.raises(VocabularyError):  # same names, another order
        onnx.detect(str(shapes_images[0]), ", ".join(reversed(NAMES.split(", "))))


def test_other_onnx_and_garbage_are_one_line(tmp_path):
    class Doubler(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    other = tmp_path / "other.onnx"
    torch.onnx.export(Doubler(), (torch.zeros(2),), str(other), dynamo=False)
    with pytest.raises(FormatError, match="ONNX model of something else"):
        OnnxDetector(other)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(FormatError, match="not a readable ONNX model"):
        OnnxDetector(garbage)
    assert checkpoint_kind(str(garbage)) == "onnx"


def test_cli_export_then_detect(exported, shapes_images, tmp_path, capsys):
    """`ovdet export` writes the file, `ovdet detect --model x.onnx` runs it to the torch
    detector's detections; an unmatched vocabulary or a non-ViLD model is one line."""
    out = tmp_path / "m.onnx"
    image = str(shapes_images[1])
    assert main(["export", "--model", "shapes-vild", "--vocab", NAMES, "--out", str(out),
                 "--check", image]) == 0  # fmt: skip
    assert "agree in order and class" in capsys.readouterr().err
    results = {}
    for model in ("shapes-vild", str(out)):
        folder = tmp_path / Path(model).stem
        args = ["detect", image, "--model", model, "--vocab", NAMES, "--out", str(folder)]
        assert main(args + ["--min-score", "0.05"]) == 0
        results[model] = json.loads((folder / "detections.json").read_text())
    ref, got = results["shapes-vild"], results[str(out)]
    assert len(ref) == len(got) > 0
    for a, b in zip(ref, got, strict=True):
        assert a["category_id"] == b["category_id"]
        assert max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"], strict=True)) < 1e-2
    assert main(["detect", image, "--model", str(out), "--vocab", "circle"]) == 2
    assert "exported for 10 names" in capsys.readouterr().err
    assert main(["export", "--model", "shapes-clip", "--vocab", "circle"]) == 2
    assert "ViLD-family checkpoint" in capsys.readouterr().err
    assert isinstance(load(str(out)), OnnxDetector)
