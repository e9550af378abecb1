import pytest
import torch
import torch.nn.functional as F

from ovdet.methods.regionspot.model import RegionSpot, RegionSpotConfig, box_coverage
from ovdet.methods.regionspot.recognizer import mask_coverage


def test_box_coverage_by_hand():
    # a 2x2 grid; the box covers the left column fully and half of the right column's top cell
    cover = box_coverage(torch.tensor([[[0.0, 0.0, 0.75, 0.5]]]), (2, 2))
    torch.testing.assert_close(cover[0, 0], torch.tensor([[1.0, 0.5], [0.0, 0.0]]))


def test_mask_coverage_letterboxes_then_pools():
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)  # H=2, W=4 -> padded to 4x4
    mask[0, :, :2] = True
    cover = mask_coverage(mask, (2, 2))
    torch.testing.assert_close(cover[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_untrained_module_reads_the_region_in_clip_space():
    """At init (values and output = identity, MLP outputs zero) with a strong box prior, the
    region embedding is the mean of the CLIP features inside the box: a hand computation."""
    torch.manual_seed(0)
    d = 16
    model = RegionSpot(
        RegionSpotConfig(token_dim=8, clip_dim=d, depth=1, heads=2, class_token=False, prior="box")
    )
    with torch.no_grad():
        model.prior_weight.fill_(1000.0)  # cells outside the box get weight ~0.01**1000 = 0
        for p in (model.blocks[0].q, model.blocks[0].k):
            p.weight.zero_()
            p.bias.zero_()
        model.key_pos.weight.zero_()
    clip_map = F.normalize(torch.randn(1, d, 4, 4), dim=1)
    box = torch.tensor([[[0.0, 0.0, 0.5, 0.5]]])  # the top-left 2x2 cells
    emb = model(torch.randn(1, 1, 8), box, clip_map, None)
    expected = F.normalize(clip_map[0, :, :2, :2].mean((1, 2)), dim=0)
    torch.testing.assert_close(emb[0, 0], expected, atol=1e-5, rtol=1e-4)


def test_ablation_inputs_are_checked():
    m = RegionSpot(RegionSpotConfig(token_dim=8, clip_dim=16, heads=2, prior="mask"))
    with pytest.raises(ValueError, match="mask_cover"):
        m(torch.randn(1, 2, 8), torch.rand(1, 2, 4), torch.randn(1, 16, 4, 4), torch.randn(1, 16))
    no_clip = RegionSpot(
        RegionSpotConfig(token_dim=8, clip_dim=16, heads=2, feature_map=False, class_token=False)
    )
    assert no_clip(torch.randn(1, 2, 8), torch.rand(1, 2, 4)).shape == (1, 2, 16)
