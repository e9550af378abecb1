"""Timing shared by the benchmark scripts (imported as `timing` from the benchmarks folder)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: str) -> None:
    """Wait for `device`'s queued kernels (CUDA runs them asynchronously), so a timing is whole."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
