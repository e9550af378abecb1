"""A contact sheet of labelled images, for review before training on them."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from ovdet.label.export import LabelledImage


def label_sheet(
    images: list[LabelledImage], names: list[str], tile: int = 320, columns: int = 4
) -> Image.Image:
    """The images drawn with their labels (boxes, names, scores), each fit into a `tile` square,
    `columns` to a row, with its relative path under it."""
    import torch

    from ovdet.io.images import load_image
    from ovdet.ops.boxes import xywh_to_xyxy
    from ovdet.types import Regions
    from ovdet.viz import draw_regions

    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 16)), (255, 255, 255))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=12)
    for i, im in enumerate(images):
        boxes = torch.tensor([r["bbox"] for r in im.labels], dtype=torch.float32).reshape(-1, 4)
        regions = Regions(
            xywh_to_xyxy(boxes),
            im.size,
            scores=torch.tensor([r["score"] for r in im.labels]),
            labels=torch.tensor([r["category_id"] - 1 for r in im.labels], dtype=torch.int64),
        )
        picture = draw_regions(load_image(im.source), regions, names, show_masks=False)
        picture.thumbnail((tile - 4, tile - 4))
        x, y = (i % columns) * tile, (i // columns) * (tile + 16)
        sheet.paste(picture, (x + (tile - picture.width) // 2, y + (tile - picture.height) // 2))
        caption = f"{im.key} ({len(im.labels)})"
        draw.text((x + 2, y + tile), caption[-48:], fill=(0, 0, 0), font=font)
    return sheet
