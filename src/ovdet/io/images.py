"""One image loader for every entry point: paths, PIL images, numpy arrays and tensors -> RGB uint8.

EXIF orientation is applied; grayscale, palette, RGBA (composited on white), CMYK and 16-bit or
float images become 8-bit RGB. Missing, unreadable, truncated, empty and oversized
(decompression-bomb) images raise `ImageError` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ovdet.errors import ImageError

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

MAX_PIXELS = 178_956_970  # PIL's own error threshold (2x its warning threshold)


def load_image(image: ImageInput, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Load any supported image as a (3, H, W) uint8 RGB tensor.

    Args:
        image: a file path, a PIL image, a numpy array (H, W), (H, W, 3) or (H, W, 4), or a tensor
            (3, H, W) / (H, W); integer arrays wider than 8 bit are scaled by their dtype's range,
            float arrays are taken as values in [0, 1].
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).

    Returns:
        (3, H, W) uint8 tensor.
    """
    if isinstance(image, (str, os.PathLike)):
        return _from_pil(_open(Path(image), max_pixels), str(image), max_pixels)
    if isinstance(image, Image.Image):
        _check_size(image.size, max_pixels, "PIL image")
        return _from_pil(image, "PIL image", max_pixels)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (3, 4):
            t = t.permute(1, 2, 0)
        return _from_array(t.numpy(), "tensor", max_pixels)
    if isinstance(image, np.ndarray):
        return _from_array(image, "array", max_pixels)
    raise ImageError(
        f"expected an image path, PIL image, numpy array or tensor, got {type(image).__name__}"
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file as `load_image` returns it (EXIF rotations by 90 degrees swap
    the sides), from its header alone."""
    try:
        with _pil_limit(), Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def decode_image(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Encoded image bytes (PNG, JPEG, ...) -> (3, H, W) uint8 RGB tensor.

    The size is read from the header and checked against `max_pixels` before any pixel is
    decoded (a decompression bomb costs nothing). `name` appears in errors.
    """
    if not data:
        raise ImageError(f"image {name} is empty (0 bytes)")
    return _from_pil(_decode(io.BytesIO(data), name, max_pixels), name, max_pixels)


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"image file is empty (0 bytes): {path}")
    return _decode(path, str(path), max_pixels)


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int) -> Image.Image:
    try:
        with _pil_limit(), warnings.catch_warnings():
            # our own limit decides (checked from the header, before any pixel is decoded);
            # PIL's warning-as-error at 89.5 Mpx would otherwise override `max_pixels`
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
            _check_size(img.size, max_pixels, name)
            img.load()
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {name}: not an image format PIL reads") from None
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise ImageError(f"cannot read image {name}: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's plugins raise all three on bad data
        raise ImageError(f"cannot read image {name} (truncated or corrupt?): {e}") from None
    return img


_PIL_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_limit() -> Iterator[None]:
    """PIL's own bomb check off while a header is read: `_check_size` applies `max_pixels` to
    the header's size before any pixel is decoded (PIL would refuse at 2x its global limit)."""
    with _PIL_LOCK:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"image {name} has zero size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(
            f"image {name} is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} "
            "(a decompression bomb?); pass max_pixels to allow it"
        )


def _from_pil(img: Image.Image, name: str, max_pixels: int) -> torch.Tensor:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as e:  # a malformed EXIF block must not lose the image
        raise ImageError(f"cannot apply EXIF orientation of {name}: {e}") from None
    _check_size(img.size, max_pixels, name)  # EXIF rotation keeps the pixel count
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if img.mode != "F":  # PIL opens 16-bit files as "I;16" or "I": scale by the 16-bit range
            arr = np.round(np.clip(arr, 0, 65535) / 257.0).astype(np.uint8)
        return _from_array(arr, name, max_pixels)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    img = img.convert("RGB")
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _from_array(arr: np.ndarray, name: str, max_pixels: int) -> torch.Tensor:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(f"{name} must have shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    _check_size((arr.shape[1], arr.shape[0]), max_pixels, name)
    arr = _to_uint8(arr, name)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[-1] == 4:
        rgb, alpha = arr[..., :3].astype(np.float32), arr[..., 3:].astype(np.float32) / 255
        arr = np.round(rgb * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name} contains NaN or infinite values")
        return np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise ImageError(f"{name} has negative pixel values (min {arr.min()})")
        top = 65535 if arr.dtype == np.uint16 or arr.max() > 255 else 255
        if arr.max() > 65535:
            raise ImageError(f"{name} has values up to {arr.max()}, beyond 16 bit")
        return np.round(arr.astype(np.float64) * (255 / top)).astype(np.uint8)
    raise ImageError(f"{name} has unsupported dtype {arr.dtype}")
