"""Video: `ovdet detect clip.mp4` detects every (or every N-th) frame in batches, writes one COCO
results list keyed by frame and an annotated MP4; `--track` keeps one id per shape while it
moves across 30 frames; a file that is not a video is one line."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ovdet.cli.main import main

pytest.importorskip("av")


def _moving_shapes(path, frames: int = 30) -> None:
    """A red circle moving right and a blue square moving left on grey, 10 frames/s."""
    from ovdet.io.video import VideoWriter

    with VideoWriter(path, 10) as video:
        for t in range(frames):
            im = Image.new("RGB", (160, 120), (128, 128, 128))
            draw = ImageDraw.Draw(im)
            draw.ellipse([10 + 3 * t, 30, 50 + 3 * t, 70], fill=(220, 40, 40))
            draw.rectangle([140 - 2 * t, 80, 170 - 2 * t, 110], fill=(40, 40, 220))
            video.write(torch.from_numpy(np.array(im)).permute(2, 0, 1))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "moving.mp4"
    _moving_shapes(path)
    return path


def test_frames_round_trip_through_the_writer(clip):
    from ovdet.io.video import read_frames, video_fps

    frames = list(read_frames(clip))
    assert [i for i, _ in frames] == list(range(30)) and video_fps(clip) == pytest.approx(10)
    assert frames[0][1].shape == (3, 120, 160) and frames[0][1].dtype == torch.uint8
    grey = frames[0][1][:, 5:20, 100:150].float()  # background: H.264 keeps it near 128
    assert (grey - 128).abs().mean() < 4
    assert [i for i, _ in read_frames(clip, every=7)] == [0, 7, 14, 21, 28]


def test_track_ids_stay_constant_while_the_shapes_move(clip, tmp_path, capsys):
    pytest.importorskip("trackers")
    args = ["detect", str(clip), "--model", "shapes-vild", "--vocab", "circle, square, star",
            "--min-score", "0.3", "--track", "--out", str(tmp_path), "--no-cache"]  # fmt: skip
    assert main(args) == 0
    records = json.loads((tmp_path / "moving.json").read_text())
    ids = defaultdict(list)
    for r in records:
        ids[r["category_name"]].append((r["frame"], r["track_id"]))
    for name in ("circle", "square"):
        frames = sorted(ids[name])
        assert [f for f, _ in frames] == list(range(30)), name  # found in every frame
        tracked = {t for f, t in frames if f > 0}  # frame 0: not yet a confirmed track
        assert len(tracked) == 1 and None not in tracked, (name, frames)
    assert ids["circle"][5][1] != ids["square"][5][1]
    from ovdet.io.video import read_frames

    drawn = list(read_frames(tmp_path / "moving.mp4"))
    assert len(drawn) == 30 and drawn[10][1].shape == (3, 120, 160)
    assert "2 tracks" in " ".join(capsys.readouterr().out.split())


def test_every_nth_frame_and_bad_videos(clip, tmp_path, capsys):
    args = ["detect", str(clip), "--model", "shapes-vild", "--vocab", "circle, square",
            "--every", "10", "--out", str(tmp_path / "e"), "--no-cache"]  # fmt: skip
    assert main(args) == 0
    frames = {r["frame"] for r in json.loads((tmp_path / "e" / "moving.json").read_text())}
    assert frames == {0, 10, 20}
    capsys.readouterr()
    fake = tmp_path / "not-a-video.mp4"
    fake.write_bytes(b"these are not frames" * 100)
    for bad in (["detect", str(fake)], ["detect", str(clip), str(tmp_path / "photo.png")]):
        assert main([*bad, "--model", "shapes-vild", "--vocab", "circle", "--out",
                     str(tmp_path / "b")]) == 2  # fmt: skip
        err = capsys.readouterr().err.split("\r")[-1]  # after any progress bar
        assert err.startswith("ovdet: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "b" / "not-a-video.mp4").exists()
