"""Serving beyond this machine: API keys on every /v1 route (constant-time, never logged),
a token bucket per client answering 429 with Retry-After, /metrics in Prometheus' format,
one JSON log line per request, and the refusal to bind an open API to the network."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from ovdet.cli.main import main  # noqa: E402
from ovdet.serve.access import (  # noqa: E402
    ApiKeys,
    TokenBuckets,
    check_exposure,
    key_id,
    read_keys,
)
from ovdet.serve.app import create_app  # noqa: E402
from ovdet.serve.zoo import Zoo  # noqa: E402

KEY, OTHER = "k" * 8 + "-team-one-secret", "o" * 8 + "-team-two-secret"


@pytest.fixture(scope="module")
def zoo():
    return Zoo.load(["shapes-vild"], text_cache=None)


def test_keys_guard_every_v1_route_and_are_never_logged(zoo, caplog):
    app = create_app(zoo, keys=ApiKeys([KEY, OTHER]), load_seconds=1.5)
    with TestClient(app) as client, caplog.at_level(logging.INFO, "ovdet.serve.access"):
        assert client.get("/healthz").status_code == 200  # open: a load balancer's probe
        for headers in ({}, {"Authorization": "Bearer wrong-key-of-enough-length"},
                        {"Authorization": KEY}):  # fmt: skip
            r = client.get("/v1/models", headers=headers)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            assert "API key" in r.json()["error"]
        for key in (KEY, OTHER):
            r = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.headers["X-Request-Id"]
        r = client.post("/v1/classify", data={"vocab": "circle"}, files={"image": ("a", b"x")})
        assert r.status_code == 401  # POSTs too, before the body is looked at
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ovdet.serve.access"]
    assert [x["status"] for x in lines if x["route"] == "/v1/models"] == [401, 401, 401, 200, 200]
    assert {x["key"] for x in lines if x["status"] == 200 and x["route"] == "/v1/models"} == {
        key_id(KEY), key_id(OTHER)}  # fmt: skip
    assert KEY not in caplog.text and OTHER not in caplog.text


def test_rate_limit_per_client_answers_429_with_retry_after(zoo):
    app = create_app(zoo, keys=ApiKeys([KEY, OTHER]), buckets=TokenBuckets(0.5, 2))
    one, two = ({"Authorization": f"Bearer {k}"} for k in (KEY, OTHER))
    with TestClient(app) as client:
        assert [client.get("/v1/models", headers=one).status_code for _ in range(3)] == [
            200, 200, 429]  # fmt: skip
        r = client.get("/v1/models", headers=one)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "rate limit" in r.json()["error"]
        assert client.get("/v1/models", headers=two).status_code == 200  # its own bucket
        assert client.get("/healthz").status_code == 200  # not limited


def test_token_bucket_refills_at_its_rate():
    b = TokenBuckets(rate=2.0, burst=3)
    assert [b.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a", now=0.0) == pytest.approx(0.5)  # one token in 1/2 s
    assert b.take("a", now=0.5) == 0.0
    assert b.take("a", now=10.0) == 0.0  # refilled, capped at the burst
    assert [b.take("a", now=10.0) for _ in range(3)][-1] > 0


def test_metrics_count_requests_by_route_and_status(zoo):
    from PIL import Image

    from ovdet.cli.demo import novel_scene
    from ovdet.viz import encode_png

    png = encode_png(Image.fromarray(novel_scene(2026).image))
    with TestClient(create_app(zoo, load_seconds=2.5)) as client:
        client.get("/v1/models")
        r = client.post("/v1/detect", data={"vocab": "circle, star"},
                        files={"image": ("demo.png", png, "image/png")})  # fmt: skip
        assert r.status_code == 200
        client.get("/nowhere")
        text = client.get("/metrics").text
        served = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    # what an operation costs here, for a client's timeout (and the server's --timeout)
    assert served["shapes-vild"]["seconds"]["detect"] > 0
    assert "recognize" not in served["shapes-vild"]["seconds"]  # none asked yet
    assert 'ovdet_requests_total{route="/v1/models",status="200"} 1.0' in text
    assert 'ovdet_requests_total{route="/v1/detect",status="200"} 1.0' in text
    assert 'ovdet_requests_total{route="other",status="404"} 1.0' in text
    assert 'ovdet_request_seconds_count{route="/v1/detect"} 1.0' in text
    assert "ovdet_images_total 1.0" in text and "ovdet_model_load_seconds 2.5" in text
    assert "ovdet_queue_depth 0.0" in text


def test_keys_are_read_checked_and_exposure_is_refused(tmp_path, monkeypatch, capsys):
    from ovdet.errors import OvdetError

    (tmp_path / "keys").write_text(f"# team keys\n{KEY}\n\n{OTHER}  # second\n")
    monkeypatch.setenv("OVDET_API_KEY", f"{KEY},{'e' * 20}")
    assert read_keys([], [str(tmp_path / "keys")]) == [KEY, "e" * 20, OTHER]
    with pytest.raises(OvdetError, match="at least 16") as e:
        read_keys(["short"])
    assert "short" not in str(e.value)  # the key itself is never echoed
    check_exposure("127.0.0.1", [], False)
    check_exposure("0.0.0.0", [KEY], False)
    check_exposure("0.0.0.0", [], True)
    monkeypatch.delenv("OVDET_API_KEY")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err and "--insecure" in err and err.count("\n") == 1


def test_a_regionspots_models_are_shared_and_sam_is_optional():
    """serve loads the SAM and CLIP a served RegionSpot holds once (the same objects), takes
    its SAM when --sam is not given, and without any SAM refuses segment in one line."""
    from ovdet.serve.limits import RequestError

    zoo = Zoo.load(["shapes-regionspot"], clip="shapes-clip", text_cache=None)
    spot = zoo.models["shapes-regionspot"].runner
    assert zoo.sam is spot.sam and zoo.models["clip"].runner.clip is spot.clip
    bare = Zoo.load(["shapes-vild"], clip="shapes-clip", text_cache=None)
    assert bare.sam is not None  # shapes-sam beside the shapes CLIP
    bare.sam = None  # as with a real CLIP and no --sam
    import torch

    with pytest.raises(RequestError, match="--sam"):
        bare.segment(bare.models["shapes-vild"], torch.zeros(3, 32, 32, dtype=torch.uint8),
                     None, points=torch.tensor([[5.0, 5.0]]))  # fmt: skip
