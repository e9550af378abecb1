"""The FastAPI app: the versioned JSON API, its OpenAPI page (/docs), /healthz and the web page.

Every refusal is a 4xx with {"error": "<one line>"}; an unexpected failure is a 500 with one line
(the traceback goes to the server log, never into the body).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import torch
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ovdet.errors import OvdetError
from ovdet.serve import inputs
from ovdet.serve.access import ApiKeys, TokenBuckets, retry_after
from ovdet.serve.jobs import JobQueue
from ovdet.serve.limits import Limits, RequestError
from ovdet.serve.records import image_id_of, records
from ovdet.serve.results import ResultStore
from ovdet.serve.zoo import Zoo

log = logging.getLogger("ovdet.serve")
FORM_SLACK = 2**20  # bytes a request may carry beyond the image: vocabulary, boxes, multipart


ImageFile = Annotated[UploadFile, File(description="the image (PNG, JPEG, WebP, ...)")]
VocabText = Annotated[str, Form(description='class names: "cat, traffic cone|cone", or "coco"')]
ModelName = Annotated[str | None, Form(description="a served model's name (GET /v1/models)")]
ImageId = Annotated[
    str | None, Form(description="the records' image_id (default: the upload's file name)")
]
BOXES = '[[x1, y1, x2, y2], ...], or COCO records with XYWH "bbox" (a response\'s detections)'


class RequeryBody(BaseModel):
    result_id: str
    queries: str


def create_app(
    zoo: Zoo,
    limits: Limits | None = None,
    cors_origins: tuple[str, ...] = (),
    keys: ApiKeys | None = None,
    buckets: TokenBuckets | None = None,
    load_seconds: float = 0.0,
):
    """The app serving `zoo` under `limits`; CORS only for the origins given (none by default);
    with `keys`, every /v1 route needs one of them as a Bearer token; with `buckets`, each
    client (key, or address) is rate-limited; /metrics and one JSON log line per request."""
    limits = limits or Limits()
    queue, kept = JobQueue(limits), ResultStore(limits.results_kept)
    metrics = _metrics(queue, load_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        queue.close()

    app = FastAPI(
        title="ovdet",
        version="1",
        summary="open-vocabulary detection, recognition and segmentation",
        lifespan=lifespan,
    )
    app.state.zoo, app.state.queue, app.state.limits = zoo, queue, limits
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"]
        )
    _add_error_handlers(app, limits)
    _add_gate(app, keys or ApiKeys(), buckets, metrics)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("ovdet").joinpath("resources/serve/index.html").read_text()

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Answers while inference runs (it runs in other threads)."""
        return {"status": "ok", "pending": queue.pending, "served": queue.done}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        if metrics is None:
            raise RequestError(501, "metrics need prometheus-client: pip install 'ovdet[serve]'")
        body, kind = metrics.text()
        return Response(body, media_type=kind)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        """The served models, what each can do, and the request limits."""
        return {
            "models": [m.describe() for m in zoo.models.values()],
            "limits": {k: v for k, v in vars(limits).items()},
        }

    @app.get("/v1/demo.png", include_in_schema=False)
    def demo_png() -> Response:
        return Response(_demo_png(), media_type="image/png")

    @app.get("/v1/demo")
    def demo() -> dict[str, str]:
        """The demo scene (a shapes-world scene with a novel shape) and its vocabulary."""
        from ovdet.eval.shapes_clip import SHAPES_VOCAB

        return {"image": "/v1/demo.png", "vocabulary": ", ".join(SHAPES_VOCAB.names)}

    @app.post("/v1/detect")
    async def detect(
        image: ImageFile,
        vocab: VocabText,
        model: ModelName = None,
        min_score: Annotated[float, Form(description="drop detections below this score")] = 0.0,
        image_id: ImageId = None,
    ) -> dict[str, Any]:
        """Find and name every object of the vocabulary. Records are COCO results (XYWH boxes),
        ready for `ovdet eval`; `result_id` lets /v1/requery re-score them with new words."""
        served, words = zoo.get(model, "detect"), inputs.read_vocabulary(vocab, limits)
        floor = _unit(min_score, "min_score")
        data = await image.read()

        def work() -> tuple[torch.Tensor, Any]:
            pixels = inputs.read_image(data, image.filename or "upload", limits)
            return pixels, zoo.detect(served, pixels, words)

        start = time.perf_counter()
        pixels, regions = await queue.run(work)
        regions = regions[regions.scores >= floor]
        return _answer(
            served, pixels, regions, words, image_id_of(image_id, image.filename), kept, start,
            "detect",
        )  # fmt: skip

    @app.post("/v1/recognize")
    async def recognize(
        image: ImageFile,
        boxes: Annotated[str, Form(description=BOXES)],
        vocab: VocabText,
        model: ModelName = None,
        image_id: ImageId = None,
    ) -> dict[str, Any]:
        """Name the given boxes (one record per box, in the order given)."""
        served, words = zoo.get(model, "recognize"), inputs.read_vocabulary(vocab, limits)
        data = await image.read()

        def work() -> tuple[torch.Tensor, Any]:
            pixels = inputs.read_image(data, image.filename or "upload", limits)
            xyxy = inputs.read_boxes(boxes, _hw(pixels), limits)
            return pixels, zoo.recognize(served, pixels, xyxy, words)

        start = time.perf_counter()
        pixels, regions = await queue.run(work)
        return _answer(
            served, pixels, regions, words, image_id_of(image_id, image.filename), kept, start,
            "recognize",
        )  # fmt: skip

    @app.post("/v1/classify")
    async def classify(
        image: ImageFile,
        vocab: VocabText,
        top_k: Annotated[int, Form(description="labels returned")] = 5,
    ) -> dict[str, Any]:
        """Zero-shot classification of the whole image by the served CLIP."""
        words = inputs.read_vocabulary(vocab, limits)
        if top_k < 1:
            raise RequestError(422, f"top_k must be >= 1, got {top_k}")
        data = await image.read()

        def work() -> torch.Tensor:
            return zoo.classify(inputs.read_image(data, image.filename or "upload", limits), words)

        start = time.perf_counter()
        probs = await queue.run(work)
        top = probs.topk(min(top_k, len(words)))
        return {
            "model": "clip",
            "top": [
                {"category_name": words.names[i], "probability": round(float(p), 5)}
                for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ],
            "seconds": round(time.perf_counter() - start, 4),
        }

    @app.post("/v1/segment")
    async def segment(
        image: ImageFile,
        vocab: VocabText,
        boxes: Annotated[str | None, Form(description=f"box prompts: {BOXES}")] = None,
        points: Annotated[
            str | None, Form(description='point prompts: "x,y; x,y" or [[x, y], ...]')
        ] = None,
        model: ModelName = None,
        image_id: ImageId = None,
    ) -> dict[str, Any]:
        """Masks from box or point prompts (SAM), each with a name: one record per prompt, with
        an RLE segmentation."""
        if (boxes is None) == (points is None):
            raise RequestError(
                422, "send box prompts (boxes) or point prompts (points), one of them"
            )
        served, words = zoo.get(model, "segment"), inputs.read_vocabulary(vocab, limits)
        data = await image.read()

        def work() -> tuple[torch.Tensor, Any]:
            pixels = inputs.read_image(data, image.filename or "upload", limits)
            if boxes is not None:
                xyxy = inputs.read_boxes(boxes, _hw(pixels), limits)
                return pixels, zoo.segment(served, pixels, words, xyxy=xyxy)
            xy = inputs.read_points(points, _hw(pixels), limits)
            return pixels, zoo.segment(served, pixels, words, points=xy)

        start = time.perf_counter()
        pixels, regions = await queue.run(work)
        return _answer(
            served, pixels, regions, words, image_id_of(image_id, image.filename), kept, start,
            "segment",
        )  # fmt: skip

    @app.post("/v1/requery")
    async def requery(body: RequeryBody) -> dict[str, Any]:
        """Re-score the regions of an earlier response (its result_id) against free-text queries
        with no model pass over the image: scores[i][j] is region i's score for query j."""
        queries = inputs.read_queries(body.queries, limits)
        name, embeddings = kept.get(body.result_id)
        served = zoo.get(name, "requery")
        start = time.perf_counter()
        scores = await queue.run(zoo.requery, served, embeddings, queries)
        return {
            "model": name,
            "queries": queries,
            "scores": [[round(float(v), 5) for v in row] for row in scores.tolist()],
            "best": [queries[int(j)] for j in scores.argmax(1).tolist()],
            "seconds": round(time.perf_counter() - start, 4),
        }

    return app


def _answer(
    served, pixels, regions, words, image_id, kept: ResultStore, start: float, operation: str
) -> dict:
    h, w = _hw(pixels)
    served.took(operation, time.perf_counter() - start)
    return {
        "model": served.name,
        "image": {"id": image_id, "width": w, "height": h},
        "vocabulary": list(words.names),
        "result_id": kept.put(served.name, regions.embeddings),
        "detections": records(regions, words, image_id, served.base_names),
        "seconds": round(time.perf_counter() - start, 4),
    }


def _hw(image: torch.Tensor) -> tuple[int, int]:
    return int(image.shape[-2]), int(image.shape[-1])


def _unit(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise RequestError(422, f"{name} must be in [0, 1], got {value}")
    return value


_DEMO: dict[str, bytes] = {}


def _demo_png() -> bytes:
    """The demo scene of `ovdet demo` (the same seed), as PNG bytes."""
    if "png" not in _DEMO:
        from PIL import Image

        from ovdet.cli.demo import novel_scene
        from ovdet.viz import encode_png

        _DEMO["png"] = encode_png(Image.fromarray(novel_scene(2026).image))
    return _DEMO["png"]


def _metrics(queue: JobQueue, load_seconds: float) -> Any:
    """The app's Prometheus counters, or None without prometheus-client."""
    try:
        from ovdet.serve.metrics import Metrics

        return Metrics(queue, load_seconds)
    except ImportError:
        return None


def _add_gate(app: FastAPI, keys: ApiKeys, buckets: TokenBuckets | None, metrics: Any) -> None:
    """Every request: its id; on /v1 routes the API key and the client's rate; then the metrics
    and one JSON log line (id, route, status, ms, key id; never the key)."""
    import json
    import uuid

    access_log = logging.getLogger("ovdet.serve.access")
    known: set[str | None] = set()  # the app's route paths (metric labels stay bounded)

    @app.middleware("http")
    async def gate(request: Request, call_next):
        start, request_id = time.perf_counter(), uuid.uuid4().hex[:12]
        path = request.url.path
        if not known:  # the routes are added after this middleware: read them once, here
            known.update(getattr(r, "path", None) for r in app.routes)
        route = path if path in known else "other"
        client = request.client.host if request.client else "unknown"
        key = None
        response = None
        if path.startswith("/v1/") and keys.keys:
            key = keys.check(request.headers.get("authorization"))
            if key is None:
                response = JSONResponse(
                    {"error": "this server needs an API key: Authorization: Bearer <key>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if response is None and path.startswith("/v1/") and buckets is not None:
            wait = buckets.take(key or client)
            if wait > 0:
                response = JSONResponse(
                    {"error": f"rate limit: {buckets.rate:g} requests/s, bursts of "
                              f"{buckets.burst}; retry in {wait:.1f} s"},
                    status_code=429,
                    headers={"Retry-After": retry_after(wait)},
                )  # fmt: skip
        if response is None:
            response = await call_next(request)
        seconds = time.perf_counter() - start
        response.headers["X-Request-Id"] = request_id
        if metrics is not None:
            metrics.observe(route, response.status_code, seconds)
        line = {
            "id": request_id,
            "method": request.method,
            "route": route,
            "status": response.status_code,
            "ms": round(seconds * 1000, 1),
            "key": key,
        }
        access_log.info(json.dumps(line))  # fmt: skip
        return response


def _add_error_handlers(app: FastAPI, limits: Limits) -> None:
    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.middleware("http")
    async def cap_body(request: Request, call_next):
        """Refuse a body over the cap from its Content-Length, before reading it; a POST with no
        length (chunked) is refused too, so no body is read unbounded."""
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return error(411, "send a Content-Length (chunked uploads are not accepted)")
            if not length.isdigit():
                return error(400, f"bad Content-Length {length[:20]!r}")
            if int(length) > limits.upload_bytes + FORM_SLACK:
                return error(
                    413,
                    f"request is {length} bytes, over the {limits.upload_bytes} byte upload cap",
                )
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def refused(_request: Request, e: RequestError) -> JSONResponse:
        return error(e.status, e.message, e.headers)

    @app.exception_handler(OvdetError)
    async def bad_input(_request: Request, e: OvdetError) -> JSONResponse:
        return error(422, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        what = "is missing" if first.get("type") == "missing" else first.get("msg", "is invalid")
        return error(422, f"{where or 'request'} {what}".strip())

    @app.exception_handler(StarletteHTTPException)
    async def http(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal(_request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return error(500, f"internal error ({type(e).__name__}); the server log has the details")
