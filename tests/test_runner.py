"""The dataset pass: streamed, batched, resumable after a kill, unreadable images skipped."""

import json

import pytest
import torch
from PIL import Image

from ovdet.data.image_list import ImageList, find_images, gt_images
from ovdet.errors import ConfigError, OvdetError
from ovdet.io.stream import stream_images
from ovdet.runner import parts_folder, run_detection
from ovdet.types import Regions
from ovdet.vocab.parse import parse_vocabulary


class Boxes:
    """A detector whose detections depend on the image only: one box per image at its mean
    colour; counts the images it saw and can be told to die after some."""

    def __init__(self, die_after=None):
        self.seen, self.calls, self.die_after = [], [], die_after

    def detect_batch(self, images, vocab):
        self.calls.append(len(images))
        out = []
        for image in images:
            if self.die_after is not None and len(self.seen) >= self.die_after:
                raise KeyboardInterrupt  # a kill mid-run
            self.seen.append(image.float().mean().item())
            v = image.float().mean().item()
            out.append(
                Regions(
                    torch.tensor([[1.0, 2.0, 3.0 + v / 10, 4.0]]),
                    tuple(image.shape[-2:]),
                    scores=torch.tensor([v / 255]),
                    labels=torch.tensor([int(v) % len(vocab)]),
                )
            )
        return out


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(7):
        where = root / "sub" if i % 3 == 0 else root
        Image.new("RGB", (20 + i, 16), (30 * i, 10, 5)).save(where / f"{i}.png")
    (root / "bad.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_find_images_walks_folders_and_globs(folder, tmp_path):
    listed = find_images(folder)
    assert sorted(listed.ids) == sorted(
        ["1.png", "2.png", "4.png", "5.png", "bad.png", "sub/0.png", "sub/3.png", "sub/6.png"]
    )
    assert [p.name for p in find_images(str(folder / "sub" / "*.png")).paths] == [
        "0.png",
        "3.png",
        "6.png",
    ]
    with pytest.raises(OvdetError, match="no image files"):
        find_images(str(tmp_path / "*.jpg"))
    with pytest.raises(OvdetError, match="not found"):
        find_images(tmp_path / "nope")
    with pytest.raises(OvdetError, match="is a file"):
        find_images(folder / "1.png")
    with pytest.raises(OvdetError, match="lists no images"):
        gt_images({"images": []}, folder)


def test_stream_keeps_order_and_reports_unreadable_images(folder):
    paths = sorted(folder.glob("*.png"))
    ahead = list(stream_images(paths, workers=2, prefetch=2))
    inline = list(stream_images(paths, workers=0))
    assert [s.index for s in ahead] == list(range(len(paths)))
    for a, b in zip(ahead, inline, strict=True):
        assert (a.error is None) == (b.error is None)
        if a.image is not None:
            assert torch.equal(a.image, b.image)
    bad = [s for s in ahead if s.error is not None]
    assert len(bad) == 1 and "bad.png" in bad[0].error and bad[0].image is None


def test_a_killed_run_resumes_without_recomputing_and_equals_a_straight_run(folder, tmp_path):
    images = find_images(folder)
    vocab = parse_vocabulary("a, b, c")
    sig = {"model": "boxes"}
    straight = run_detection(
        Boxes(),
        vocab,
        images,
        tmp_path / "s.json",
        sig,
        batch_size=2,
        shard_size=3,
        progress=False,
    )
    assert straight.images == 7 and straight.detections == 7
    assert straight.skipped == [(str(folder / "bad.png"), straight.skipped[0][1])]
    assert not parts_folder(tmp_path / "s.json").exists()  # shards merged, then removed

    out = tmp_path / "k.json"
    with pytest.raises(KeyboardInterrupt):
        run_detection(
            Boxes(die_after=4), vocab, images, out, sig, batch_size=2, shard_size=3, progress=False
        )
    assert (
        not out.exists()
        and len(json.loads((parts_folder(out) / "index.json").read_text())["shards"]) == 1
    )
    again = Boxes()
    resumed = run_detection(
        again, vocab, images, out, sig, batch_size=2, shard_size=3, progress=False
    )
    # 8 files: the first shard's 3 are not redone; of the other 5, bad.png is unreadable
    assert len(again.seen) == 4
    assert max(again.calls) <= 2
    assert json.loads(out.read_text()) == json.loads((tmp_path / "s.json").read_text())
    assert resumed.skipped == straight.skipped and resumed.fresh == 5


def test_a_leftover_run_of_another_signature_is_refused(folder, tmp_path):
    images = find_images(folder)
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        run_detection(
            Boxes(die_after=3),
            parse_vocabulary("a, b"),
            images,
            out,
            {"model": "x"},
            batch_size=1,
            shard_size=2,
            progress=False,
        )
    with pytest.raises(ConfigError, match="another model, vocabulary or image list"):
        run_detection(
            Boxes(),
            parse_vocabulary("a, b, c"),
            images,
            out,
            {"model": "x"},
            shard_size=2,
            progress=False,
        )
    fewer = ImageList(images.ids[:3], images.paths[:3])
    with pytest.raises(ConfigError):
        run_detection(
            Boxes(),
            parse_vocabulary("a, b"),
            fewer,
            out,
            {"model": "x"},
            shard_size=2,
            progress=False,
        )


def test_the_summary_measures_how_long_the_model_waited_for_images(folder, tmp_path, monkeypatch):
    """Slow decoding and a fast model: the model waits most of the run; a slow model with
    decoding ahead in threads: it hardly waits."""
    import time

    import ovdet.io.stream as stream

    images = find_images(folder)
    vocab = parse_vocabulary("a, b")
    read = stream._read

    class Slow(Boxes):
        def detect_batch(self, images, vocab):
            time.sleep(0.05 * len(images))
            return super().detect_batch(images, vocab)

    def slow_read(path):
        time.sleep(0.05)
        return read(path)

    monkeypatch.setattr(stream, "_read", slow_read)
    starved = run_detection(Boxes(), vocab, images, tmp_path / "a.json", {}, workers=0)
    monkeypatch.setattr(stream, "_read", read)
    fed = run_detection(Slow(), vocab, images, tmp_path / "b.json", {}, workers=2, batch_size=2)
    # measured: 0.99 and 0.01 (sleeps of 50 ms an image)
    assert starved.idle_share > 0.6 and fed.idle_share < 0.3, (starved, fed)
