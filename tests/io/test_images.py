import numpy as np
import pytest
import torch
from PIL import Image

from ovdet.errors import ImageError
from ovdet.io.images import load_image


def rgb_array(h=6, w=8):
    return (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)


def test_formats_agree(tmp_path):
    arr = rgb_array()
    Image.fromarray(arr).save(tmp_path / "a.png")
    want = torch.from_numpy(arr).permute(2, 0, 1)
    for src in (
        tmp_path / "a.png",
        str(tmp_path / "a.png"),
        Image.fromarray(arr),
        arr,
        want,
        want.permute(1, 2, 0),
    ):
        got = load_image(src)
        assert got.dtype == torch.uint8 and got.shape == (3, 6, 8)
        assert torch.equal(got, want), type(src)


def test_exif_orientation_is_applied(tmp_path):
    arr = rgb_array(4, 10)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    assert load_image(tmp_path / "r.jpg").shape == (3, 10, 4)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I;16", "I", "F"])
def test_modes_become_rgb(tmp_path, mode):
    img = Image.fromarray(rgb_array()).convert(mode)
    got = load_image(img)
    assert got.shape == (3, 6, 8) and got.dtype == torch.uint8


def test_rgba_composited_on_white_and_16_bit_scaled(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red; the rest fully transparent
    got = load_image(rgba)
    assert got[:, 0, 0].tolist() == [255, 0, 0] and got[:, 1, 1].tolist() == [255, 255, 255]
    deep = np.full((3, 3), 65535, dtype=np.uint16)
    deep[0, 0] = 257
    Image.fromarray(deep).save(tmp_path / "d.png")
    got = load_image(tmp_path / "d.png")
    assert got[0, 1, 1] == 255 and got[0, 0, 0] == 1
    assert load_image(deep)[0, 0, 0] == 1
    assert load_image(np.full((2, 2), 0.5, np.float32))[0, 0, 0] == 128


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "text.jpg")
    Image.fromarray(rgb_array(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_decompression_bomb_guard(tmp_path):
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        load_image(tmp_path / "big.png", max_pixels=10_000)
    assert load_image(tmp_path / "big.png").shape == (3, 200, 200)


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.zeros((4, 4, 2), np.uint8), "must have shape"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 2), -1, np.int32), "negative"),
        (np.zeros((2, 2), np.complex64), "dtype"),
    ],
)
def test_bad_arrays(arr, message):
    with pytest.raises(ImageError, match=message):
        load_image(arr)


def test_unsupported_type():
    with pytest.raises(ImageError, match="got int"):
        load_image(3)


def test_max_pixels_decides_over_pils_own_limit(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 20_000)  # PIL alone refuses 120,000 px
    assert load_image(tmp_path / "big.png", max_pixels=200_000).shape == (3, 300, 400)
    assert PILImage.MAX_IMAGE_PIXELS == 20_000  # restored
    with pytest.raises(ImageError, match="over the limit of 100000"):
        load_image(tmp_path / "big.png", max_pixels=100_000)
