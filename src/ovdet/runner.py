"""Detection over a whole dataset: streamed, batched, resumable, one COCO results file.

Images are decoded ahead by a bounded reader (`io.stream`), detected in batches where the
detector has `detect_batch` (ViLD letterboxes every image to one side, so a batch is one backbone
pass), and their results written in shards of `shard_size` images (`io.shards`): a killed run
resumes after its last complete shard. The shards are then streamed into one results file,
written atomically, and removed. Memory holds one shard's results and the prefetch window,
whatever the dataset's size. Images that cannot be read are reported, skipped and counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ovdet.data.image_list import ImageList
from ovdet.io.atomic import atomic_open
from ovdet.io.coco import regions_to_coco
from ovdet.io.shards import ResultShards
from ovdet.io.stream import StreamedImage, stream_images
from ovdet.types import Regions, Vocabulary


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

    @property
    def images_per_second(self) -> float:
        return self.fresh / self.seconds if self.seconds > 0 else 0.0


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
    on_image: Callable[[int, torch.Tensor, Regions], None] | None = None,
    progress: bool = True,
) -> RunSummary:
    """Detect `vocab` in every image and write one COCO results list to `results`.

    Args:
        detector: an `ovdet.Detector`; with `detect_batch(images, vocab)` images go in batches.
        images: the images and the ids their results carry.
        signature: what makes this run besides the vocabulary and the images (model, options);
            a leftover run of another signature is refused, not resumed.
        category_ids: label index -> category id (default label + 1).
        batch_size: images per `detect_batch` call (1 where `extra` is given).
        shard_size: images per resumable shard.
        workers: decoding threads (0: decode in this thread).
        extra: `extra(i, image) -> keyword arguments of detect` for image i (e.g. its proposals);
            forces one image per call.
        on_image: called with (i, image, regions) after each image (pictures, logs).
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
    batch = 1 if extra is not None or not hasattr(detector, "detect_batch") else batch_size
    bar = tqdm(
        total=len(images),
        initial=len(images) - len(todo),
        desc="detect",
        unit="img",
        disable=not progress,
    )
    start = time.perf_counter()
    stream = stream_images([images.paths[i] for i in todo], workers=workers)
    for chunk in _chunks(stream, shard_size):
        entries, skipped = [], []
        read = [s for s in chunk if s.image is not None]
        for s in chunk:
            if s.error is not None:
                skipped.append([str(images.paths[todo[s.index]]), s.error])
                bar.write(f"skipped {images.paths[todo[s.index]]}: {s.error}")
        for b in range(0, len(read), batch):
            group = read[b : b + batch]
            found = _detect(detector, vocab, group, todo, extra)
            for s, regions in zip(group, found, strict=True):
                i = todo[s.index]
                for e, label in zip(
                    regions_to_coco(regions, images.ids[i], category_ids),
                    regions.labels.tolist(),
                    strict=True,
                ):
                    entries.append({**e, "category_name": vocab.names[label]})
                if on_image is not None:
                    on_image(i, s.image, regions)
            bar.update(len(group))
        bar.update(len(chunk) - len(read))
        shards.add(
            [_key(images, todo[s.index]) for s in chunk],
            {"detections": entries, "skipped": skipped},
        )
        summary.fresh += len(chunk)
    bar.close()
    summary.seconds = time.perf_counter() - start
    _merge(shards, results, summary)
    summary.images = len(images) - len(summary.skipped)
    shards.remove()
    return summary


def _detect(
    detector: Any,
    vocab: Vocabulary,
    group: list[StreamedImage],
    todo: list[int],
    extra: Callable[[int, torch.Tensor], dict[str, Any]] | None,
) -> list[Regions]:
    if extra is not None:
        s = group[0]
        return [detector.detect(s.image, vocab, **extra(todo[s.index], s.image))]
    if len(group) > 1 or hasattr(detector, "detect_batch"):
        return detector.detect_batch([s.image for s in group], vocab)
    return [detector.detect(group[0].image, vocab)]


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
