"""`ovdet detect clip.mp4 --vocab ... --model M --out DIR [--every N] [--track]`: a video's
frames detected in batches; DIR/<stem>.json (one COCO results list: image_id is the frame
index, plus track_id with --track) and DIR/<stem>.mp4 (the frames drawn). `--track` links
detections across frames with ByteTrack (the trackers package)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ovdet.errors import OvdetError


def run_video(args: argparse.Namespace, detector: Any, vocab: Any, path: str) -> dict[str, Any]:
    """Detect `path`'s frames; write its JSON and annotated MP4 under args.out; returns a
    summary (frames, detections, tracks)."""
    from tqdm import tqdm

    from ovdet.io.atomic import write_json
    from ovdet.io.coco import regions_to_coco
    from ovdet.io.video import VideoWriter, read_frames, video_fps

    fps = video_fps(path)
    out, stem = Path(args.out), Path(path).stem
    tracker = _tracker(fps / args.every) if args.track else None
    names = list(vocab.names)
    records: list[dict[str, Any]] = []
    frames, tracks = 0, set()
    batch: list[tuple[int, torch.Tensor]] = []
    with VideoWriter(out / f"{stem}.mp4", fps / args.every) as video:

        def flush() -> None:
            nonlocal frames
            images = [f for _, f in batch]
            if hasattr(detector, "detect_batch"):
                found = detector.detect_batch(images, vocab)
            else:  # one frame at a time
                found = [detector.detect(f, vocab) for f in images]
            for (index, frame), regions in zip(batch, found, strict=True):
                regions = regions[regions.scores >= args.min_score]
                ids = None
                if tracker is not None:
                    regions, ids = _track(tracker, regions)
                    tracks.update(i for i in ids if i is not None)
                entries = regions_to_coco(regions, image_id=index)
                for k, e in enumerate(entries):
                    e["category_name"] = names[e["category_id"] - 1]
                    e["frame"] = index
                    if ids is not None:
                        e["track_id"] = ids[k]
                records.extend(entries)
                video.write(_drawn(frame, regions, names, ids))
                frames += 1
            batch.clear()

        for index, frame in tqdm(read_frames(path, args.every), desc=stem, unit="frame"):
            batch.append((index, frame))
            if len(batch) == args.batch_size:
                flush()
        if batch:
            flush()
    if frames == 0:
        raise OvdetError(f"{path} has no frames")
    write_json(out / f"{stem}.json", records, indent=1)
    return {"frames": frames, "detections": len(records), "tracks": len(tracks)}


def _tracker(frame_rate: float) -> Any:
    try:
        from trackers import ByteTrackTracker
    except ImportError:
        raise OvdetError("--track needs the trackers package: pip install 'ovdet[video]'") from None
    return ByteTrackTracker(frame_rate=frame_rate)


def _track(tracker: Any, regions: Any) -> tuple[Any, list[int | None]]:
    """This frame's regions as ByteTrack answers them, with their track ids (None for a
    detection not yet confirmed as a track: it needs two frames)."""
    from ovdet.types import Regions

    tracked = tracker.update(regions.to_supervision())
    kept = Regions.from_supervision(tracked, regions.image_size)
    return kept, [int(t) if t >= 0 else None for t in tracked.tracker_id]


def _drawn(frame: torch.Tensor, regions: Any, names: list[str], ids: list[int] | None):
    """The frame with its regions drawn (name, score and track id), at the frame's size."""
    import numpy as np

    from ovdet.viz import draw_regions

    if ids is not None and len(regions):  # one label per region: "name #id"
        shown = [
            f"{names[int(c)]}" + ("" if t is None else f" #{t}")
            for c, t in zip(regions.labels, ids, strict=True)
        ]
        regions = regions.replace(labels=torch.arange(len(regions)))
        names = shown
    picture = draw_regions(frame, regions, names, min_side=1, show_masks=False)
    if picture.size != (frame.shape[-1], frame.shape[-2]):
        picture = picture.resize((frame.shape[-1], frame.shape[-2]))
    return torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1)
