"""Images read ahead of their use: a bounded prefetching reader for dataset-level passes.

Decoding runs in a small thread pool (PIL releases the GIL while it decodes), at most `prefetch`
images ahead of the consumer, so memory stays bounded whatever the dataset's size. An image that
fails to decode is yielded with its reason instead of stopping the pass.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ovdet.errors import ImageError
from ovdet.io.images import load_image


@dataclass(frozen=True)
class StreamedImage:
    """One item of `stream_images`: the image's position in the input list, the (3, H, W) uint8
    image, or None and the reason it could not be read."""

    index: int
    image: torch.Tensor | None
    error: str | None = None


def _read(path: str | os.PathLike) -> tuple[torch.Tensor | None, str | None]:
    try:
        return load_image(path), None
    except ImageError as e:
        return None, str(e)


def stream_images(
    paths: Sequence[str | os.PathLike], workers: int = 2, prefetch: int = 8
) -> Iterator[StreamedImage]:
    """Yield every path's image in order, decoded up to `prefetch` images ahead by `workers`
    threads (workers 0: decode in the caller's thread, nothing ahead)."""
    if workers < 0 or prefetch < 1:
        raise ValueError(f"workers must be >= 0 and prefetch >= 1, got {workers}, {prefetch}")
    if workers == 0:
        for i, path in enumerate(paths):
            yield StreamedImage(i, *_read(path))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="ovdet-read") as pool:
        window: deque[tuple[int, Future]] = deque()
        queued = 0
        while queued < len(paths) and len(window) < prefetch:
            window.append((queued, pool.submit(_read, paths[queued])))
            queued += 1
        while window:
            i, future = window.popleft()
            if queued < len(paths):
                window.append((queued, pool.submit(_read, paths[queued])))
                queued += 1
            yield StreamedImage(i, *future.result())
