"""Video in and out (PyAV, the `[video]` extra): frames decoded one by one as (3, H, W) uint8
tensors, every N-th kept; an annotated copy written as H.264 MP4, atomically."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovdet.errors import ImageError, OvdetError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise OvdetError("video needs PyAV: pip install 'ovdet[video]' (or av)") from None
    return av


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate of the first video stream (30 when the file does not say)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate
    except av.FFmpegError as e:
        raise ImageError(f"cannot read video {path}: {_reason(e)}") from None
    return float(rate) if rate else 30.0


def _reason(e: Exception) -> str:
    """FFmpeg's reason, without its errno and the path again."""
    return str(getattr(e, "strerror", None) or e).strip()


def _video_stream(container: Any, path: Any) -> Any:
    if not container.streams.video:
        raise ImageError(f"{path} holds no video stream")
    return container.streams.video[0]


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[tuple[int, torch.Tensor]]:
    """(frame index, (3, H, W) uint8 RGB) for frames 0, every, 2 every, ... of the video; a
    file that is not a readable video is a one-line `ImageError`."""
    if every < 1:
        raise OvdetError(f"--every must be >= 1, got {every}")
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            for i, frame in enumerate(container.decode(stream)):
                if i % every == 0:
                    rgb = frame.to_ndarray(format="rgb24")
                    yield i, torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    except av.FFmpegError as e:
        raise ImageError(f"cannot read video {path}: {_reason(e)}") from None


class VideoWriter:
    """`with VideoWriter(path, fps) as w: w.write(frame)` for (3, H, W) uint8 frames of one size
    (odd sides are padded by a pixel: H.264 needs even ones); the file appears when closed."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path, self.fps = Path(path), fps
        self._container: Any = None
        self._stream: Any = None
        self._tmp = self.path.with_name(f".{self.path.name}.tmp.mp4")

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = _av().open(str(self._tmp), mode="w")
        return self

    def write(self, frame: torch.Tensor) -> None:
        av = _av()
        rgb = frame.permute(1, 2, 0).cpu().numpy().astype(np.uint8)
        h, w = rgb.shape[:2]
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))
        if self._stream is None:
            rate = Fraction(self.fps).limit_denominator(1000)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = rgb.shape[1], rgb.shape[0]
            self._stream.pix_fmt = "yuv420p"
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self._container.mux(packet)

    def __exit__(self, kind, value, traceback) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        if kind is None and self._stream is not None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
