import pytest
import torch

from ovdet.errors import ImageError
from ovdet.ops.letterbox import Letterbox


def test_fit_scales_the_long_side_and_rounds_half_up():
    box = Letterbox.fit(50, 100, 25)  # 12.5 rows: half up gives 13 (Python's round gives 12)
    assert box.scale == 0.25 and box.resized == (13, 25) and box.original == (50, 100)
    assert Letterbox.fit(300, 20, 150).resized == (150, 10)
    assert Letterbox.fit(1, 19, 64).resized == (3, 64)  # 3.37 rows


def test_extreme_aspect_is_refused_in_one_line():
    with pytest.raises(ImageError, match="5x3000"):
        Letterbox.fit(3000, 5, 128)


def test_image_pads_black_or_with_the_normalisation_mean():
    image = torch.full((3, 20, 40), 200, dtype=torch.uint8)
    box = Letterbox.fit(20, 40, 16)
    plain = box.image(image)
    assert plain.shape == (1, 3, 16, 16) and box.resized == (8, 16)
    assert torch.allclose(plain[..., :8, :], torch.tensor(200.0)) and (plain[..., 8:, :] == 0).all()
    normed = box.image(image, "bicubic", lambda x: (x - 100) / 50)
    assert torch.allclose(normed[..., :8, :], torch.tensor(2.0)) and (normed[..., 8:, :] == 0).all()
    with pytest.raises(ValueError, match=r"\(20, 40\)"):
        box.image(torch.zeros(3, 40, 20, dtype=torch.uint8))


def test_same_size_image_is_not_resampled():
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    assert torch.equal(Letterbox.fit(16, 16, 16).image(image)[0], image.float())


def test_boxes_map_both_ways_and_invert_clips_to_the_image():
    box = Letterbox.fit(50, 100, 25)
    xyxy = torch.tensor([[10.0, 4, 60, 48]])
    torch.testing.assert_close(box.boxes(xyxy), xyxy / 4)
    torch.testing.assert_close(box.invert_boxes(box.boxes(xyxy)), xyxy)
    out = box.invert_boxes(torch.tensor([[-3.0, 2, 30, 20]]))  # beyond the image (25 x 12.5 in)
    torch.testing.assert_close(out, torch.tensor([[0.0, 8, 100, 50]]))


def test_invert_map_cuts_the_padding_and_returns_image_resolution():
    box = Letterbox.fit(32, 64, 16)  # the image fills the top half of the input
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., :4, :] = 1.0  # the image region, at half the input's resolution
    out = box.invert_map(maps)
    assert out.shape == (1, 1, 32, 64)
    assert out[..., :24, :].min() > 0.99 and out.min() > 0.5  # zeros blur only the last rows
