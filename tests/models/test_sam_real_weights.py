"""Real SAM weights when they are in the Hugging Face cache (skipped otherwise; never downloads)."""

import pytest
import torch

from ovdet.errors import WeightsNotFoundError
from ovdet.models.sam import SamBackend
from ovdet.models.sam_everything import EverythingConfig, everything


@pytest.fixture(scope="module")
def real_sam():
    try:
        return SamBackend.from_pretrained("sam-b")
    except WeightsNotFoundError:
        pytest.skip("facebook/sam-vit-base is not cached (hf download facebook/sam-vit-base)")


def disc_image() -> tuple[torch.Tensor, torch.Tensor]:
    """A 240x320 grey image with a red disc of radius 50 at (200, 110), and its mask."""
    ys, xs = torch.meshgrid(torch.arange(240), torch.arange(320), indexing="ij")
    mask = (xs - 200) ** 2 + (ys - 110) ** 2 <= 50**2
    image = torch.full((3, 240, 320), 128, dtype=torch.uint8)
    image[:, mask] = torch.tensor([220, 30, 30], dtype=torch.uint8)[:, None]
    return image, mask


@pytest.mark.weights
def test_real_sam_segments_a_disc_from_its_box(real_sam):
    image, mask = disc_image()
    pred = real_sam.predict_boxes(real_sam.set_image(image), torch.tensor([[150.0, 60, 250, 160]]))
    iou = (pred.masks[0] & mask).sum() / (pred.masks[0] | mask).sum()
    assert iou > 0.9 and pred.tokens.shape == (1, 256)


@pytest.mark.weights
def test_real_sam_everything_finds_the_disc(real_sam):
    image, mask = disc_image()
    found = everything(real_sam, real_sam.set_image(image), EverythingConfig(points_per_side=8))
    ious = (found.masks & mask).flatten(1).sum(1) / (found.masks | mask).flatten(1).sum(1)
    assert len(found) and float(ious.max()) > 0.9
