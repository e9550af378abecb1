"""Heavy per-image passes on Ray Data: the image list becomes a dataset, `map_batches` sends it
through a pool of actors that each build their model once, and the results come back to the
caller in input order, which writes them exactly as the single-process path does (same shards,
same files).

`RAY_ADDRESS` picks a cluster (every node needs ovdet installed and the images at the same
paths); without it Ray starts locally with the machine's CPUs. `ray[data]` is the `ray` extra.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ovdet.errors import ImageError, OvdetError

# setup() -> work(list of (3, H, W) uint8 images, list of their payloads) -> one picklable result
# per image
Setup = Callable[[], Callable[[list[Any], list[Any]], list[Any]]]


def ray_module():
    """ray, started once (a cluster at RAY_ADDRESS, else locally), or a one-line error."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise OvdetError("--engine ray needs Ray Data: pip install 'ovdet[ray]'") from None
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    return ray


class _Worker:
    """One actor: builds the work function once, then decodes and processes batches of paths."""

    def __init__(self, setup: Setup) -> None:
        import torch

        torch.set_num_threads(1)  # one CPU per actor, as the pool requests
        self.work = setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ovdet.io.images import load_image

        images, errors = [], []
        for path in batch["path"]:
            try:
                images.append(load_image(str(path)))
                errors.append("")
            except ImageError as e:
                images.append(None)
                errors.append(str(e))
        payloads = [pickle.loads(p) for p in batch["payload"]]  # from ray_map_images' caller
        ok = [k for k, im in enumerate(images) if im is not None]
        done = iter(self.work([images[k] for k in ok], [payloads[k] for k in ok]))
        results = [b"" if im is None else pickle.dumps(next(done)) for im in images]
        return {
            "index": batch["index"],
            "result": np.array(results, dtype=object),
            "error": np.array(errors, dtype=object),
        }


def ray_map_images(
    paths: Sequence[Any],
    setup: Setup,
    batch_size: int = 8,
    actors: int = 2,
    payloads: Sequence[Any] | None = None,
) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (position, result or None, error or None) for every path, in input order, computed
    by `actors` Ray actors (one CPU each) that each call `setup()` once; `payloads` (one per
    path, e.g. its boxes) go to the work function beside the images."""
    ray = ray_module()
    if not paths:
        return
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    payloads = [None] * len(paths) if payloads is None else payloads
    items = [
        {"index": i, "path": str(p), "payload": pickle.dumps(x)}
        for i, (p, x) in enumerate(zip(paths, payloads, strict=True))
    ]
    blocks = min(len(items), max(actors, -(-len(items) // batch_size)))  # every actor gets work
    data = ray.data.from_items(items, override_num_blocks=blocks)
    mapped = data.map_batches(
        _Worker,
        fn_constructor_args=(setup,),
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    for row in mapped.iter_rows():
        error = row["error"] or None
        result = pickle.loads(row["result"]) if error is None else None  # our own actors' bytes
        yield int(row["index"]), result, error
