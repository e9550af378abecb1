"""Detection over a whole dataset: streamed, batched, resumable, one COCO results file.

Images are decoded ahead by a bounded reader (`io.stream`), detected in batches where the
detector has `detect_batch` (ViLD letterboxes every image to one side, so a batch is one backbone
pass), and their results written in shards of `shard_size` images (`io.shards`): a killed run
resumes after its last complete shard. The shards are then streamed into one results file,
written atomically, and removed. Memory holds one shard's results and the prefetch window,
whatever the dataset's size. Images that cannot be read are reported, skipped and counted.
With `engine="ray"` the detection runs in a pool of Ray actors (`engines.ray_data`) and this
process writes the same shards and file from their results.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ovdet.data.image_list import ImageList
from ovdet.errors import OvdetError
from ovdet.io.atomic import atomic_open
from ovdet.io.coco import regions_to_coco
from ovdet.io.shards import ResultShards
from ovdet.io.stream import StreamedImage, stream_images
from ovdet.types import Regions, Vocabulary

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a `run_detection` produced: images detected (this run and resumed), detections
    written, the images skipped with their reasons, and this run's seconds and images."""

    results: Path
    images: int = 0
    detections: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    fresh: int = 0
    waited: float = 0.0  # seconds the detector waited for decoded images (local engine)

    @property
    def images_per_second(self) -> float:
        return self.fresh / self.seconds if self.seconds > 0 else 0.0

    @property
    def idle_share(self) -> float:
        """The share of this run's time the detector sat waiting for images to be decoded."""
        return self.waited / self.seconds if self.seconds > 0 else 0.0


def parts_folder(results: Path) -> Path:
    """Where a run writing `results` keeps its shards until it finishes."""
    return results.with_name(results.name + ".parts")


def run_detection(
    detector: Any,
    vocab: Vocabulary,
    images: ImageList,
    results: str | Path,
    signature: dict[str, Any],
    category_ids: list[int] | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    workers: int = 2,
    extra: Callable[[int, torch.Tensor], dict[str, Any]] | None = None,
    on_image: Callable[[int, torch.Tensor | None, Regions], None] | None = None,
    progress: bool = True,
    engine: str = "local",
    actors: int = 2,
) -> RunSummary:
    """Detect `vocab` in every image and write one COCO results list to `results`.

    Args:
        detector: an `ovdet.Detector`; with `detect_batch(images, vocab)` images go in batches.
            With `engine="ray"`: a picklable function of no arguments that returns the detector,
            called once in each Ray actor.
        images: the images and the ids their results carry.
        signature: what makes this run besides the vocabulary and the images (model, options);
            a leftover run of another signature is refused, not resumed.
        category_ids: label index -> category id (default label + 1).
        batch_size: images per `detect_batch` call (1 where `extra` is given).
        shard_size: images per resumable shard.
        workers: decoding threads (0: decode in this thread; the local engine).
        extra: `extra(i, image) -> keyword arguments of detect` for image i (e.g. its proposals);
            forces one image per call; local engine only.
        on_image: called with (i, image, regions) after each image (pictures, logs); the image is
            None under Ray (the actors decoded it).
        engine: "local" (this process) or "ray" (`actors` Ray actors; `engines.ray_data`); both
            write the same shards and the same results file.
    """
    results = Path(results)
    shards = ResultShards(
        parts_folder(results),
        {
            **signature,
            "vocab": list(vocab.names),
            "category_ids": category_ids,
            "images": _fingerprint(images),
        },
    )
    done = shards.done()
    todo = [i for i in range(len(images)) if _key(images, i) not in done]
    summary = RunSummary(results, images=len(images) - len(todo))
    paths = [images.paths[i] for i in todo]
    waits = [0.0]  # the local engine's time blocked on the image stream
    if engine == "ray":
        if extra is not None:
            raise OvdetError("--engine ray takes detectors that propose their own boxes")
        from functools import partial

        from ovdet.engines.ray_data import ray_map_images

        setup = partial(_detection_setup, detector, vocab, batch_size)
        produced = (
            (i, None, regions, error)
            for i, regions, error in ray_map_images(paths, setup, batch_size, actors)
        )
    elif engine == "local":
        batch = 1 if extra is not None or not hasattr(detector, "detect_batch") else batch_size
        produced = _detect_local(detector, vocab, paths, todo, batch, workers, extra, waits)
    else:
        raise OvdetError(f"engine must be 'local' or 'ray', got {engine!r}")
    bar = tqdm(
        total=len(images),
        initial=len(images) - len(todo),
        desc="detect",
        unit="img",
        disable=not progress,
    )
    start = time.perf_counter()
    for chunk in _chunks(produced, shard_size):
        entries, skipped = [], []
        for k, image, regions, error in chunk:
            i = todo[k]
            if error is not None:
                skipped.append([str(images.paths[i]), error])
                log.warning("skipped %s: %s", images.paths[i], error)
                continue
            for e, label in zip(
                regions_to_coco(regions, images.ids[i], category_ids),
                regions.labels.tolist(),
                strict=True,
            ):
                entries.append({**e, "category_name": vocab.names[label]})
            if on_image is not None:
                on_image(i, image, regions)
        bar.update(len(chunk))
        keys = [_key(images, todo[k]) for k, *_ in chunk]
        shards.add(keys, {"detections": entries, "skipped": skipped})
        summary.fresh += len(chunk)
    bar.close()
    summary.seconds = time.perf_counter() - start
    summary.waited = waits[0]
    _merge(shards, results, summary)
    summary.images = len(images) - len(summary.skipped)
    shards.remove()
    return summary


Produced = tuple[int, "torch.Tensor | None", "Regions | None", "str | None"]


def _detect_local(
    detector: Any,
    vocab: Vocabulary,
    paths: list[Path],
    todo: list[int],
    batch: int,
    workers: int,
    extra: Callable[[int, torch.Tensor], dict[str, Any]] | None,
    waits: list[float],
) -> Iterator[Produced]:
    """(position in `paths`, image, regions, None), or (position, None, None, reason) for an
    image that cannot be read, in order; images decoded ahead, detected `batch` at a time.
    `waits[0]` adds up the seconds spent waiting for the next decoded image."""
    pending: list[StreamedImage] = []

    def flush() -> Iterator[Produced]:
        if extra is not None:
            (s,) = pending
            found = [detector.detect(s.image, vocab, **extra(todo[s.index], s.image))]
        else:
            found = _detect_many(detector, vocab, [s.image for s in pending])
        for s, regions in zip(pending, found, strict=True):
            yield s.index, s.image, regions, None
        pending.clear()

    for s in _timed(stream_images(paths, workers=workers), waits):
        if s.error is not None:
            yield from flush() if pending else ()
            yield s.index, None, None, s.error
            continue
        pending.append(s)
        if len(pending) == batch:
            yield from flush()
    if pending:
        yield from flush()


def _timed(items: Iterator[StreamedImage], waits: list[float]) -> Iterator[StreamedImage]:
    """`items`, adding the seconds each took to arrive to `waits[0]`."""
    while True:
        start = time.perf_counter()
        item = next(items, None)
        waits[0] += time.perf_counter() - start
        if item is None:
            return
        yield item


def _detect_many(detector: Any, vocab: Vocabulary, images: list[torch.Tensor]) -> list[Regions]:
    if hasattr(detector, "detect_batch"):
        return detector.detect_batch(images, vocab)
    return [detector.detect(image, vocab) for image in images]


def _detection_setup(
    factory: Callable[[], Any], vocab: Vocabulary, batch_size: int
) -> Callable[[list[torch.Tensor], list[Any]], list[Regions]]:
    """In a Ray actor: build the detector once; its work detects a list of images in batches."""
    detector = factory()

    def work(images: list[torch.Tensor], _payloads: list[Any]) -> list[Regions]:
        out: list[Regions] = []
        for b in range(0, len(images), batch_size):
            out += _detect_many(detector, vocab, images[b : b + batch_size])
        return out

    return work


def _merge(shards: ResultShards, results: Path, summary: RunSummary) -> None:
    """Stream every shard's detections into one JSON list at `results` (atomically)."""
    with atomic_open(results, "w") as f:
        f.write("[")
        first = True
        for record in shards.records():
            summary.skipped += [tuple(s) for s in record["skipped"]]
            for entry in record["detections"]:
                f.write(("\n" if first else ",\n") + json.dumps(entry))
                first = False
                summary.detections += 1
        f.write("\n]\n")


def _chunks(stream: Iterator[StreamedImage], size: int) -> Iterator[list[StreamedImage]]:
    chunk: list[StreamedImage] = []
    for item in stream:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _key(images: ImageList, i: int) -> str:
    return str(images.ids[i])


def _fingerprint(images: ImageList) -> dict[str, Any]:
    """The image list, summarised: its length and a hash of its ids and paths."""
    import hashlib

    h = hashlib.sha256()
    for image_id, path in zip(images.ids, images.paths, strict=True):
        h.update(f"{image_id}\t{path.as_posix()}\n".encode())
    return {"count": len(images), "sha256": h.hexdigest()}
