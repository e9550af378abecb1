"""Pictures of results: boxes, masks, names and scores drawn on the image."""

from __future__ import annotations

import colorsys
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ovdet.io.atomic import atomic_path
from ovdet.types import Regions


def _colour(i: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


MAX_SIDE = 4096  # longest side of a drawing; larger images are drawn scaled down


def draw_regions(
    image: torch.Tensor,
    regions: Regions,
    names: Sequence[str] | None = None,
    min_side: int = 480,
    show_masks: bool = True,
    max_side: int = MAX_SIDE,
) -> Image.Image:
    """Draw labelled regions (and their masks, tinted) on a (3, H, W) uint8 image; small images
    are upscaled towards `min_side` on their short side, and no drawing is longer than
    `max_side` (a 5 x 3000 strip is not drawn 480 x 288,000)."""
    arr = image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)
    scale = min(max(1.0, min_side / min(arr.shape[:2])), max_side / max(arr.shape[:2]))
    canvas = Image.fromarray(arr).convert("RGB")
    if show_masks and regions.masks is not None and len(regions):
        overlay = np.array(canvas, dtype=np.float32)
        for i, mask in enumerate(regions.masks.cpu().numpy()):
            colour = np.array(_colour(int(regions.labels[i]) if regions.labels is not None else i))
            overlay[mask] = 0.55 * overlay[mask] + 0.45 * colour
        canvas = Image.fromarray(overlay.astype(np.uint8))
    if scale != 1:
        size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
        canvas = canvas.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, canvas.height // 40))
    for i in range(len(regions)):
        label = int(regions.labels[i]) if regions.labels is not None else -1
        colour = _colour(label if label >= 0 else i)
        x1, y1, x2, y2 = (regions.xyxy[i] * scale).tolist()
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(2, canvas.height // 240))
        text = names[label] if names is not None and label >= 0 else f"#{i}"
        if regions.scores is not None:
            text = f"{text} {float(regions.scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        ty = y1 - (bottom - top) - 4 if y1 - (bottom - top) - 4 >= 0 else y1
        draw.rectangle([x1, ty, x1 + right - left + 4, ty + bottom - top + 4], fill=colour)
        draw.text((x1 + 2, ty + 2 - (top - y1)), text, fill=(0, 0, 0), font=font)
    return canvas


def encode_png(picture: Image.Image) -> bytes:
    """A PIL image as PNG bytes (encode before writing, so a failure writes nothing)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def save_png(picture: Image.Image, path: str | os.PathLike) -> None:
    """Save a PIL image as PNG atomically."""
    write_bytes(path, encode_png(picture))


def contact_sheet(hits: Sequence, title: str, tile: int = 112, columns: int = 8) -> Image.Image:
    """A grid of search hits: each region cropped from its image (with a margin), scaled into a
    `tile` square, with its rank and score; `hits` have `.image`, `.box` (xyxy) and `.score`."""
    from ovdet.io.images import load_image

    rows = max(1, -(-len(hits) // columns))
    head = 24
    sheet = Image.new("RGB", (columns * tile, head + rows * (tile + 16)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    draw.text((4, 4), f"{title}: {len(hits)} regions", fill=(0, 0, 0), font=font)
    for i, hit in enumerate(hits):
        x1, y1, x2, y2 = hit.box
        pad = 0.1 * max(x2 - x1, y2 - y1)
        picture = Image.fromarray(load_image(hit.image).permute(1, 2, 0).numpy())
        crop = picture.crop((int(x1 - pad), int(y1 - pad), int(x2 + pad) + 1, int(y2 + pad) + 1))
        fit = (tile - 4) / max(crop.width, crop.height, 1)  # small regions are enlarged too
        crop = crop.resize((max(1, round(crop.width * fit)), max(1, round(crop.height * fit))))
        x, y = (i % columns) * tile, head + (i // columns) * (tile + 16)
        sheet.paste(crop, (x + (tile - crop.width) // 2, y + (tile - crop.height) // 2))
        draw.text((x + 2, y + tile), f"{i + 1}. {hit.score:.3f}", fill=(0, 0, 0), font=font)
    return sheet
