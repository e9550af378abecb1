"""Regions <-> supervision.Detections: shapes-vild's detections (with RegionSpot's masks too)
cross to supervision and back unchanged; supervision's annotators and NMS take them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovdet.types import Regions

sv = pytest.importorskip("supervision")


def _regions() -> Regions:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 2, generator=g) * 40
    masks = torch.zeros(5, 64, 80, dtype=torch.bool)
    masks[:, 10:30, 5:50] = True
    return Regions(
        torch.cat([xy, xy + 10], 1),
        (64, 80),
        scores=torch.rand(5, generator=g),
        labels=torch.tensor([0, 2, 1, 2, 0]),
        masks=masks,
        data={"class_scores": torch.rand(5, 3, generator=g), "row": [0, 1, 2, 3, 4]},
    )


def test_regions_cross_to_supervision_and_back_unchanged():
    regions = _regions()
    d = regions.to_supervision(names=["cat", "dog", "cone"])
    assert isinstance(d, sv.Detections) and len(d) == 5
    assert np.array_equal(d.class_id, [0, 2, 1, 2, 0]) and d.mask.shape == (5, 64, 80)
    assert list(d.data["class_name"]) == ["cat", "cone", "dog", "cone", "cat"]
    np.testing.assert_allclose(d.xyxy, regions.xyxy.numpy())
    back = Regions.from_supervision(d)  # the size from the masks
    assert back.image_size == (64, 80)
    assert torch.equal(back.xyxy, regions.xyxy) and torch.equal(back.labels, regions.labels)
    assert torch.equal(back.scores, regions.scores) and torch.equal(back.masks, regions.masks)
    assert torch.equal(back.data["class_scores"], regions.data["class_scores"])
    assert back.data["class_name"][1] == "cone"


def test_supervision_tools_take_ovdet_detections():
    """What a user does next: supervision's NMS and box annotator on ovdet's output."""
    import ovdet
    from ovdet.data.shapes.generate import WorldConfig, scene_for

    scene = scene_for(0, "det-val", 1, WorldConfig())
    image = torch.from_numpy(scene.image).permute(2, 0, 1)
    found = ovdet.load("shapes-vild", text_cache=None).detect(image, "circle, star, trapezoid")
    d = found.to_supervision(["circle", "star", "trapezoid"])
    assert len(d) == len(found) > 0
    kept = d.with_nms(threshold=0.5)
    assert 0 < len(kept) <= len(d)
    picture = sv.BoxAnnotator().annotate(scene.image.copy(), d)
    assert picture.shape == scene.image.shape and not np.array_equal(picture, scene.image)
    assert Regions.from_supervision(kept, found.image_size).xyxy.shape == (len(kept), 4)


def test_without_sizes_or_supervision_it_is_one_line(monkeypatch):
    from ovdet.errors import OvdetError

    d = sv.Detections(xyxy=np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(OvdetError, match="image_size"):
        Regions.from_supervision(d)
    import builtins

    real = builtins.__import__

    def no_supervision(name, *args, **kwargs):
        if name == "supervision":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_supervision)
    with pytest.raises(OvdetError, match=r"ovdet\[interop\]"):
        _regions().to_supervision()
