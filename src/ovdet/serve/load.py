"""A load generator for a running `ovdet serve`: C concurrent clients send N detections in all.

A 503 (queue full) is retried after its Retry-After and counted as shed, not as an error; any
other non-200 answer or a failed connection is an error.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadReport:
    """What one load run saw: counts, latencies (seconds, request sent to answer read) and wall
    time."""

    requests: int
    clients: int
    errors: list[str] = field(default_factory=list)
    shed: int = 0
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile latency in seconds: the nearest rank, the smallest latency with at
        least q% of the latencies at or below it."""
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        rank = math.ceil(q * len(ordered) / 100)  # 1-based
        return ordered[max(1, min(len(ordered), rank)) - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "clients": self.clients,
            "ok": len(self.latencies),
            "errors": len(self.errors),
            "shed_503": self.shed,
            "p50_ms": round(1000 * self.percentile(50), 1),
            "p95_ms": round(1000 * self.percentile(95), 1),
            "p99_ms": round(1000 * self.percentile(99), 1),
            "throughput_per_s": round(len(self.latencies) / self.wall_s, 2) if self.wall_s else 0,
            "wall_s": round(self.wall_s, 2),
        }


def run_load(
    url: str,
    image: bytes,
    vocab: str,
    clients: int,
    requests: int,
    model: str | None = None,
    timeout_s: float = 300.0,
) -> LoadReport:
    """Send `requests` POST /v1/detect from `clients` concurrent connections to `url`."""
    return asyncio.run(_load(url.rstrip("/"), image, vocab, clients, requests, model, timeout_s))


async def _load(url, image, vocab, clients, requests, model, timeout_s) -> LoadReport:
    import httpx

    report = LoadReport(requests, clients)
    counter = iter(range(requests))
    form = {"vocab": vocab, **({"model": model} if model else {})}

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            while True:
                start = time.perf_counter()
                try:
                    r = await http.post(
                        f"{url}/v1/detect", files={"image": (f"{i}.png", image)}, data=form
                    )
                except httpx.HTTPError as e:
                    report.errors.append(f"request {i}: {type(e).__name__}: {e}")
                    break
                if r.status_code == 503:
                    report.shed += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                if r.status_code == 200 and "detections" in r.json():
                    report.latencies.append(time.perf_counter() - start)
                else:
                    report.errors.append(f"request {i}: HTTP {r.status_code} {r.text[:200]}")
                break

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    report.wall_s = time.perf_counter() - start
    return report
