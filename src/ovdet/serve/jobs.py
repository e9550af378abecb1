"""A bounded inference queue: work runs in threads off the event loop, at most `queue` requests
are admitted at once (503 + Retry-After beyond), and a request waits at most `timeout_s`."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from ovdet.serve.limits import Limits, RequestError

T = TypeVar("T")


class JobQueue:
    """Runs blocking inference in `limits.workers` threads.

    A request holds its slot until its work has finished, even after its client was told 504:
    a thread cannot be stopped, so the slot stays taken and memory stays bounded by `queue`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="ovdet-infer")
        self._lock = threading.Lock()
        self.pending = 0
        self.done = 0
        self._seconds = 0.0  # total work time of finished jobs (for Retry-After)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in an inference thread under `torch.inference_mode`; 503 if full, 504 if
        it takes longer than the time limit."""
        with self._lock:
            if self.pending >= self.limits.queue:
                raise RequestError(
                    503,
                    f"busy: {self.pending} requests in progress (queue {self.limits.queue}); retry",
                    {"Retry-After": str(self.retry_after())},
                )
            self.pending += 1
        future = self.pool.submit(self._timed, fn, *args)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.limits.timeout_s)
        except TimeoutError:
            raise RequestError(
                504,
                f"the request took longer than the {self.limits.timeout_s:g} s limit (the "
                "server's --timeout; GET /v1/models says what each operation has cost)",
            ) from None

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained a slot: mean job time x queue / workers."""
        mean = self._seconds / self.done if self.done else 1.0
        return max(1, math.ceil(mean * self.pending / self.limits.workers))

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                return fn(*args)
        finally:
            with self._lock:
                self._seconds += time.perf_counter() - start
                self.done += 1

    def _release(self, _future: Any) -> None:
        with self._lock:
            self.pending -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
