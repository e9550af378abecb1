"""RegionIndex: incremental and resumable builds, searches that find the planted region, and
refusals (other settings, another query model, unreadable images)."""

import pytest
import torch
from PIL import Image

from ovdet.data.image_list import find_images
from ovdet.errors import ConfigError, OvdetError
from ovdet.index import RegionIndex

DIM = 8


class Planted:
    """Two regions per image: box 0 embeds the image's red level on axis (red // 40), box 1 a
    constant; counts the images it embeds and can die after some."""

    def __init__(self, die_after=None):
        self.seen, self.die_after = 0, die_after

    def signature(self):
        return {"proposals": "planted", "dense_size": 0}

    def __call__(self, image):
        if self.die_after is not None and self.seen >= self.die_after:
            raise KeyboardInterrupt
        self.seen += 1
        red = int(image[0, 0, 0])
        emb = torch.zeros(2, DIM)
        emb[0, red // 40] = 1.0
        emb[1, DIM - 1] = 1.0
        boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 8.0, 8.0]])
        return {"boxes": boxes, "scores": torch.tensor([0.9, 0.5]), "embeddings": emb.half()}


class Clip:
    def __init__(self, fingerprint="a"):
        self.fingerprint, self.embed_dim = fingerprint, DIM


def folder_of(root, reds):
    root.mkdir(parents=True, exist_ok=True)
    for red in reds:
        Image.new("RGB", (10, 10), (red, 0, 0)).save(root / f"{red:03d}.png")
    return root


def query(axis):
    q = torch.zeros(1, DIM)
    q[0, axis] = 1.0
    return q


def test_build_add_and_search(tmp_path):
    images = folder_of(tmp_path / "a", [0, 40, 80])
    index = RegionIndex(tmp_path / "idx")
    source = Planted()
    counts = index.build(find_images(images), source, "fake", Clip(), shard_size=2, progress=False)
    assert counts == {"added": 3, "skipped": 0, "regions": 6, "images": 3} and source.seen == 3
    (hit,) = index.search(query(2), 1)[0]
    assert hit.image.endswith("080.png") and hit.box == [1.0, 1.0, 5.0, 5.0] and hit.score > 0.99
    # adding a folder with one new image computes only that one; the old ones keep their rows
    folder_of(images, [120])
    more = Planted()
    counts = RegionIndex(tmp_path / "idx").build(
        find_images(images), more, "fake", Clip(), shard_size=2, progress=False
    )
    assert more.seen == 1 and counts["images"] == 4 and counts["regions"] == 8
    hits = RegionIndex(tmp_path / "idx").search(torch.cat([query(3), query(2)]), 2)
    assert hits[0][0].image.endswith("120.png") and hits[1][0].image.endswith("080.png")


def test_a_killed_build_resumes_after_its_last_shard(tmp_path):
    images = find_images(folder_of(tmp_path / "a", [0, 40, 80, 120, 160]))
    with pytest.raises(KeyboardInterrupt):
        RegionIndex(tmp_path / "idx").build(
            images, Planted(die_after=3), "fake", Clip(), shard_size=2, progress=False
        )
    rest = Planted()
    counts = RegionIndex(tmp_path / "idx").build(
        images, rest, "fake", Clip(), shard_size=2, progress=False
    )
    assert rest.seen == 3 and counts["regions"] == 10  # the first shard (2 images) was kept
    (hit,) = RegionIndex(tmp_path / "idx").search(query(4), 1)[0]
    assert hit.image.endswith("160.png")


def test_refusals_and_unreadable_images(tmp_path):
    root = folder_of(tmp_path / "a", [0, 40])
    (root / "bad.png").write_bytes(b"nope")
    index = RegionIndex(tmp_path / "idx")
    counts = index.build(find_images(root), Planted(), "fake", Clip(), progress=False)
    assert counts["skipped"] == 1 and counts["regions"] == 4
    assert index.meta["skipped"][0].endswith("bad.png")
    with pytest.raises(ConfigError, match="other settings"):
        RegionIndex(tmp_path / "idx").build(
            find_images(root), Planted(), "other", Clip("b"), progress=False
        )
    with pytest.raises(ConfigError, match="query it with the same CLIP"):
        RegionIndex(tmp_path / "idx").check_model(Clip("b"))
    with pytest.raises(OvdetError, match="not a region index"):
        RegionIndex(tmp_path / "none").search(query(0), 1)
