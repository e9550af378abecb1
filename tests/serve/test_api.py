"""`ovdet serve`'s JSON API on the bundled shapes-world models (FastAPI's TestClient): every
endpoint's answer against the library's own, and bad input of every kind answered 4xx in one
line."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from ovdet.serve.app import create_app  # noqa: E402
from ovdet.serve.limits import Limits  # noqa: E402
from ovdet.serve.zoo import Zoo  # noqa: E402


@pytest.fixture(scope="module")
def zoo():
    return Zoo.load(["shapes-vild", "shapes-regionspot", "shapes-ovsam"], text_cache=None)


@pytest.fixture(scope="module")
def client(zoo):
    with TestClient(create_app(zoo)) as c:
        yield c


@pytest.fixture(scope="module")
def demo(client):
    """The demo scene: its PNG, vocabulary, objects' names, GT masks and boxes."""
    from ovdet.cli.demo import novel_scene
    from ovdet.ops.masks import masks_to_boxes

    scene = novel_scene(2026)
    masks = np.stack(scene.masks)
    return {
        "png": client.get("/v1/demo.png").content,
        "vocab": client.get("/v1/demo").json()["vocabulary"],
        "names": [o.name for o in scene.objects],
        "colours": [o.colour for o in scene.objects],
        "masks": masks,
        "boxes": masks_to_boxes(masks).tolist(),
        "image": torch.from_numpy(scene.image).permute(2, 0, 1),
    }


def post(client, path, demo, **fields):
    return client.post(path, files={"image": ("demo.png", demo["png"], "image/png")}, data=fields)


def mask_iou(rle: dict, truth: np.ndarray) -> float:
    from ovdet.ops.masks import rle_decode

    m = rle_decode(rle).numpy()
    return float((m & truth).sum() / (m | truth).sum())


def test_models_health_page_and_openapi(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"shapes-vild", "shapes-regionspot", "shapes-ovsam", "clip"}
    assert "detect" in models["shapes-vild"]["operations"]
    assert "detect" not in models["shapes-ovsam"]["operations"]
    assert "detect" not in models["clip"]["operations"]
    assert "trapezoid" not in models["shapes-vild"]["base_names"]
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/").text
    assert all(f'id="{i}"' in page for i in ("file", "demo", "vocab", "model", "run", "score"))
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("detect", "recognize", "classify", "segment", "requery", "models"):
        assert f"/v1/{path}" in paths


def test_detect_equals_the_library_and_finds_the_novel_shape(client, demo, zoo):
    from ovdet.io.coco import regions_to_coco
    from ovdet.vocab.parse import parse_inline_vocabulary

    r = post(client, "/v1/detect", demo, vocab=demo["vocab"], model="shapes-vild")
    assert r.status_code == 200, r.text
    body = r.json()
    vocab = parse_inline_vocabulary(demo["vocab"])
    direct = regions_to_coco(zoo.models["shapes-vild"].runner.detect(demo["image"], vocab), "x")
    assert [d["bbox"] for d in body["detections"]] == [d["bbox"] for d in direct]
    assert [d["score"] for d in body["detections"]] == [d["score"] for d in direct]
    confident = {d["category_name"]: d for d in body["detections"] if d["score"] >= 0.5}
    assert {"cross", "trapezoid"} <= set(confident)
    assert confident["trapezoid"]["novel"] and not confident["cross"]["novel"]
    assert body["image"] == {"id": "demo.png", "width": 128, "height": 128}
    floor = post(client, "/v1/detect", demo, vocab=demo["vocab"], min_score="0.5").json()
    assert all(d["score"] >= 0.5 for d in floor["detections"])
    assert len(floor["detections"]) == sum(d["score"] >= 0.5 for d in body["detections"])


def test_regionspot_detects_with_masks(client, demo):
    r = post(client, "/v1/detect", demo, vocab=demo["vocab"], model="shapes-regionspot")
    assert r.status_code == 200, r.text
    best = {}
    for d in r.json()["detections"]:
        assert d["segmentation"]["size"] == [128, 128]
        best.setdefault(d["category_name"], d)
    assert {"cross", "triangle"} <= set(best)


@pytest.mark.parametrize("model", ["clip", "shapes-vild", "shapes-ovsam"])
def test_recognize_names_ground_truth_boxes(client, demo, model, zoo):
    from ovdet.types import Regions
    from ovdet.vocab.parse import parse_inline_vocabulary

    r = post(
        client,
        "/v1/recognize",
        demo,
        vocab=demo["vocab"],
        boxes=json.dumps(demo["boxes"]),
        model=model,
    )
    assert r.status_code == 200, r.text
    names = [d["category_name"] for d in r.json()["detections"]]
    vocab = parse_inline_vocabulary(demo["vocab"])
    boxes = Regions(torch.tensor(demo["boxes"]).float(), (128, 128))
    direct = zoo.models[model].runner.recognize_regions(demo["image"], boxes, vocab)
    assert names == [vocab.names[i] for i in direct.labels.tolist()]  # the library's answer
    if model == "shapes-ovsam":  # it calls the novel trapezoid a semicircle here (0.42)
        assert names[:2] == demo["names"][:2]
    else:
        assert names == demo["names"]


def test_recognize_takes_a_detect_response_back(client, demo):
    found = post(client, "/v1/detect", demo, vocab=demo["vocab"], min_score="0.5").json()
    again = post(
        client,
        "/v1/recognize",
        demo,
        vocab=demo["vocab"],
        model="clip",
        boxes=json.dumps(found["detections"]),
    ).json()
    assert [d["bbox"] for d in again["detections"]] == [d["bbox"] for d in found["detections"]]


@pytest.mark.parametrize("model", ["clip", "shapes-regionspot", "shapes-ovsam"])
@pytest.mark.parametrize("prompt", ["points", "boxes"])
def test_segment_from_points_or_boxes(client, demo, model, prompt):
    if prompt == "points":
        from ovdet.ops.masks import interior_points

        value = "; ".join(f"{x},{y}" for x, y in interior_points(demo["masks"]).tolist())
    else:
        value = json.dumps(demo["boxes"])
    r = post(client, "/v1/segment", demo, vocab=demo["vocab"], model=model, **{prompt: value})
    assert r.status_code == 200, r.text
    found = r.json()["detections"]
    ious = [mask_iou(d["segmentation"], m) for d, m in zip(found, demo["masks"], strict=True)]
    assert min(ious) >= 0.8, ious
    names = [d["category_name"] for d in found]
    assert names[:2] == demo["names"][:2]  # cross and triangle, base shapes, for every model


def test_classify_names_a_single_shape_and_ranks(client, demo, zoo):
    from ovdet.viz import encode_png
    from ovdet.vocab.parse import parse_inline_vocabulary

    x1, y1, x2, y2 = (int(v) for v in demo["boxes"][0])  # the cross, alone in its crop
    crop = demo["image"][:, y1 - 4 : y2 + 4, x1 - 4 : x2 + 4]
    png = encode_png(Image.fromarray(crop.permute(1, 2, 0).numpy()))
    r = client.post(
        "/v1/classify", files={"image": ("c.png", png)}, data={"vocab": demo["vocab"], "top_k": "3"}
    )
    top = r.json()["top"]
    assert [t["category_name"] for t in top][0] == "cross"
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    direct = zoo.classify(crop, parse_inline_vocabulary(demo["vocab"]))
    assert top[0]["probability"] == pytest.approx(float(direct.max()), abs=1e-4)


@pytest.mark.parametrize("model", ["clip", "shapes-vild", "shapes-regionspot", "shapes-ovsam"])
def test_requery_rescores_kept_regions_by_colour(client, demo, model):
    named = post(
        client,
        "/v1/recognize",
        demo,
        vocab=demo["vocab"],
        model=model,
        boxes=json.dumps(demo["boxes"]),
    ).json()
    colours = ["purple shape", "cyan shape", "green shape", "red shape"]
    r = client.post(
        "/v1/requery", json={"result_id": named["result_id"], "queries": ", ".join(colours)}
    )
    assert r.status_code == 200, r.text
    assert r.json()["best"] == [f"{c} shape" for c in demo["colours"]]
    assert np.asarray(r.json()["scores"]).shape == (3, 4)


def test_detect_json_chains_into_ovdet_eval(client, demo, tmp_path):
    from ovdet.cli.main import main
    from ovdet.io.coco import regions_to_coco
    from ovdet.types import Regions
    from ovdet.vocab.parse import parse_inline_vocabulary

    vocab = parse_inline_vocabulary(demo["vocab"])
    found = post(client, "/v1/detect", demo, vocab=demo["vocab"], image_id="7").json()
    truth = Regions(
        torch.tensor(demo["boxes"]),
        (128, 128),
        labels=torch.tensor([vocab.names.index(n) for n in demo["names"]]),
    )
    annotations = [
        {**e, "id": i + 1, "area": e["bbox"][2] * e["bbox"][3], "iscrowd": 0}
        for i, e in enumerate(regions_to_coco(truth, image_id=7))
    ]
    gt = {
        "images": [{"id": 7, "file_name": "demo.png", "width": 128, "height": 128}],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(vocab.names)],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(found["detections"]))
    code = main(
        [
            "eval",
            "--gt",
            str(tmp_path / "gt.json"),
            "--dt",
            str(tmp_path / "dt.json"),
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["metrics"]["AP50"] >= 90.0, metrics["metrics"]  # 100.0 when measured


BAD = [
    ("/v1/detect", {"data": {"vocab": "cat"}}, 422),  # no image
    ("/v1/detect", {"files": {"image": ("a.png", b"nope")}, "data": {"vocab": "cat"}}, 400),
    ("/v1/detect", {"files": {"image": ("a.png", b"")}, "data": {"vocab": "cat"}}, 400),
    ("/v1/detect", {"image": True, "data": {}}, 422),  # no vocabulary
    ("/v1/detect", {"image": True, "data": {"vocab": ","}}, 422),
    ("/v1/detect", {"image": True, "data": {"vocab": "a" * 101}}, 413),
    ("/v1/detect", {"image": True, "data": {"vocab": ", ".join(map(str, range(2001)))}}, 413),
    ("/v1/detect", {"image": True, "data": {"vocab": "cat", "model": "nope"}}, 400),
    ("/v1/detect", {"image": True, "data": {"vocab": "cat", "model": "clip"}}, 400),
    ("/v1/detect", {"image": True, "data": {"vocab": "cat", "model": "shapes-ovsam"}}, 400),
    ("/v1/detect", {"image": True, "data": {"vocab": "cat", "min_score": "nan"}}, 422),
    ("/v1/detect", {"image": True, "data": {"vocab": "cat", "min_score": "2"}}, 422),
    ("/v1/detect", {"image": True, "data": {"vocab": "cat", "min_score": "x"}}, 422),
    ("/v1/detect", {"json": {"vocab": "cat"}}, 422),
    ("/v1/recognize", {"image": True, "data": {"vocab": "cat"}}, 422),  # no boxes
    ("/v1/recognize", {"image": True, "data": {"vocab": "cat", "boxes": "[[1,2]]"}}, 422),
    ("/v1/recognize", {"image": True, "data": {"vocab": "cat", "boxes": "[[9,9,1,1]]"}}, 422),
    (
        "/v1/recognize",
        {"image": True, "data": {"vocab": "cat", "boxes": "[[500,500,600,600]]"}},
        422,
    ),
    ("/v1/recognize", {"image": True, "data": {"vocab": "cat", "boxes": "[[NaN,1,5,5]]"}}, 422),
    ("/v1/recognize", {"image": True, "data": {"vocab": "cat", "boxes": "{"}}, 422),
    ("/v1/classify", {"image": True, "data": {"vocab": "cat", "top_k": "0"}}, 422),
    ("/v1/classify", {"image": True, "data": {"vocab": "cat", "top_k": "1.5"}}, 422),
    ("/v1/segment", {"image": True, "data": {"vocab": "cat"}}, 422),  # no prompt
    ("/v1/segment", {"image": True, "data": {"vocab": "cat", "points": "1,1", "boxes": "[]"}}, 422),
    ("/v1/segment", {"image": True, "data": {"vocab": "cat", "points": "500,5"}}, 422),
    ("/v1/segment", {"image": True, "data": {"vocab": "cat", "points": "a,b"}}, 422),
    ("/v1/requery", {"json": {"result_id": "nope", "queries": "cat"}}, 404),
    ("/v1/requery", {"json": {"queries": "cat"}}, 422),
    ("/v1/requery", {"content": b"{", "headers": {"content-type": "application/json"}}, 422),
    ("/v1/nope", {}, 404),
]


@pytest.mark.parametrize(
    ("path", "request_", "code"), BAD, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD)]
)
def test_bad_input_gets_one_line_4xx(client, demo, path, request_, code):
    kwargs = dict(request_)
    if kwargs.pop("image", False):
        kwargs["files"] = {"image": ("demo.png", demo["png"], "image/png")}
    r = client.post(path, **kwargs)
    assert r.status_code == code, r.text
    assert list(r.json()) == ["error"] and "\n" not in r.json()["error"]
    assert "Traceback" not in r.text


def test_random_fields_never_crash_the_server(client, demo):
    """200 requests with random field values and random bytes for the image: never a 5xx."""
    rng = random.Random(0)
    pieces = [
        "",
        ",",
        "[",
        "]",
        "{",
        "}",
        "NaN",
        "-1",
        "1e309",
        "cat",
        "|",
        "\x00",
        "é",
        "0",
        "9" * 30,
        '"',
        "null",
        "[[1,2,3,4]]",
        "[[0,0,128,128]]",
        "1,1",
        "coco",
        " ",
    ]

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))

    for _ in range(200):
        path = rng.choice(["/v1/detect", "/v1/recognize", "/v1/classify", "/v1/segment"])
        image = demo["png"] if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(64))
        fields = {
            k: text()
            for k in ("vocab", "boxes", "points", "model", "min_score", "top_k")
            if rng.random() < 0.7
        }
        r = client.post(path, files={"image": ("f.png", image)}, data=fields)
        assert r.status_code < 500, (path, fields, r.text)
        if r.status_code >= 400:
            assert "\n" not in r.json()["error"]


def test_caps_on_bytes_and_pixels_chunked_bodies_and_cors(zoo, demo):
    from synthetic import png_header_only

    with TestClient(create_app(zoo, Limits(upload_bytes=2000, pixels=10_000))) as c:

        def detect(image: bytes):
            return c.post("/v1/detect", files={"image": ("a.png", image)}, data={"vocab": "cat"})

        assert detect(b"\0" * (2000 + 2**20 + 1)).status_code == 413  # refused by its length
        bomb = detect(png_header_only(50_000, 50_000))
        assert bomb.status_code == 413 and "50000x50000" in bomb.json()["error"]
        assert detect(demo["png"]).status_code == 413  # 128 x 128 > 10,000 pixels
        chunked = c.post("/v1/detect", content=iter([b"--x\r\n"]))
        assert chunked.status_code == 411
        r = c.get("/v1/models", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(zoo, cors_origins=("http://app.example",))) as c:
        r = c.get("/v1/models", headers={"Origin": "http://app.example"})
        assert r.headers["access-control-allow-origin"] == "http://app.example"


def test_serve_binds_this_machine_only_by_default():
    from ovdet.cli.main import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.cors_origin == []
