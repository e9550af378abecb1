"""/metrics in Prometheus' text format (prometheus-client, in the serve extra): requests by
route and status, latency histograms, the queue's depth, images served and the models' load
time. Each app has its own registry (tests build several)."""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
IMAGE_ROUTES = ("/v1/detect", "/v1/recognize", "/v1/segment", "/v1/classify")


class Metrics:
    """The server's counters; `queue` (a `JobQueue`) is read when scraped."""

    def __init__(self, queue: Any, load_seconds: float = 0.0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ovdet_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ovdet_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.images = Counter("ovdet_images", "images answered", registry=self.registry)
        depth = Gauge("ovdet_queue_depth", "requests admitted, not done", registry=self.registry)
        depth.set_function(lambda: queue.pending)
        load = Gauge("ovdet_model_load_seconds", "seconds the models took to load",
                     registry=self.registry)  # fmt: skip
        load.set(load_seconds)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status == 200 and route in IMAGE_ROUTES:
            self.images.inc()

    def text(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
