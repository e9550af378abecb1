"""Transformers backbones offline (tiny random ResNet, ConvNeXt, Swin saved to folders), frozen
BatchNorm, frozen stages, the FPN, and the one-line errors of a bad --backbone."""

import pytest
import torch
from tiny_backbones import save_tiny_backbone
from torch import nn

from ovdet.detect.build import backbone_entry, build_backbone
from ovdet.detect.frozen_bn import FrozenBatchNorm2d, freeze_batchnorm
from ovdet.detect.hf_backbone import load_hf_backbone, stage_of
from ovdet.errors import ConfigError, FormatError, WeightsNotFoundError

STAGES = ["stage1", "stage2", "stage3", "stage4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return {k: save_tiny_backbone(tmp_path_factory.mktemp(k), k) for k in ("resnet", "convnext")}


def test_frozen_batchnorm_is_batchnorm_in_eval_and_never_changes():
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 3)
    x = torch.randn(2, 5, 4, 4)
    want = bn.eval()(x)
    frozen = freeze_batchnorm(nn.Sequential(bn))[0]
    assert isinstance(frozen, FrozenBatchNorm2d) and not list(frozen.parameters())
    frozen.train()
    torch.testing.assert_close(frozen(x), want)
    torch.testing.assert_close(frozen(x * 3 + 1), bn.eval()(x * 3 + 1))  # no batch statistics
    again = FrozenBatchNorm2d(5)
    again.load_state_dict(bn.state_dict())  # BatchNorm's keys (its counter is dropped)
    torch.testing.assert_close(again(x), want)


@pytest.mark.parametrize(
    "kind, strides", [("resnet", [4, 8, 16, 32]), ("convnext", [4, 8, 16, 32])]
)
def test_a_saved_backbone_loads_offline_with_its_stages_and_strides(tiny, kind, strides):
    body = load_hf_backbone(str(tiny[kind]), STAGES, freeze_at=2)
    assert body.strides == strides and len(body.channels) == 4
    maps = body(torch.randn(1, 3, 96, 64))
    assert [tuple(m.shape[-2:]) for m in maps] == [(96 // s, 64 // s) for s in strides]
    assert [m.shape[1] for m in maps] == body.channels
    frozen = {n for n, p in body.model.named_parameters() if not p.requires_grad}
    for name, _ in body.model.named_parameters():  # the stem and stage 1 are frozen, no more
        stage = stage_of(name)
        assert (name in frozen) == (stage is not None and stage < 2), name
    if kind == "resnet":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
def test_inference_fusing_keeps_a_resnets_maps(tmp_path, layer_type):
    """`fuse_for_inference` (BatchNorms folded into convolutions, ReLUs in place: what
    ViLDDetector runs) gives the unfused maps, with statistics far from the identity."""
    from transformers import ResNetBackbone, ResNetConfig

    torch.manual_seed(0)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[2, 1, 1, 1], layer_type=layer_type
    )
    ResNetBackbone(config).save_pretrained(tmp_path)
    body = load_hf_backbone(str(tmp_path), STAGES, freeze_at=0).eval()
    with torch.no_grad():
        for m in body.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 2)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 3)
        x = torch.randn(2, 3, 64, 96)
        want = body(x)
        assert body.fuse_for_inference()
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
        assert all(m.inplace for m in body.modules() if isinstance(m, nn.ReLU))
        got = body(x)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_inference_fusing_leaves_other_backbones_alone(tiny):
    body = load_hf_backbone(str(tiny["convnext"]), STAGES, freeze_at=0)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    assert not body.fuse_for_inference()
    assert body.state_dict().keys() == before.keys()


def test_swin_loads_offline(tmp_path):
    folder = save_tiny_backbone(tmp_path / "swin", "swin")
    body = load_hf_backbone(str(folder), ["stage2", "stage4"], freeze_at=0)
    assert body.strides == [8, 32]
    assert all(p.requires_grad for p in body.parameters())


def test_fpn_backbone_rebuilds_from_its_spec_entry(tiny):
    torch.manual_seed(0)
    pyramid, entry = backbone_entry(str(tiny["resnet"]), STAGES, 2)
    assert pyramid.strides == [4, 8, 16, 32, 64] and pyramid.roi_strides == [4, 8, 16, 32]
    rebuilt = build_backbone({"backbone": entry})  # offline, from the config alone
    rebuilt.load_state_dict(pyramid.state_dict())
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(pyramid.eval()(x), rebuilt.eval()(x), strict=True):
        assert a.shape[1] == 256
        torch.testing.assert_close(a, b)


def test_fpn_adds_the_coarser_level_upsampled():
    """P_k = out_k(lateral_k(C_k) + up(inner_{k+1})): checked against a hand computation."""
    from ovdet.detect.fpn import FPN

    torch.manual_seed(0)
    fpn = FPN([3, 5], [8, 16], channels=4)
    c2, c3 = torch.randn(1, 3, 8, 8), torch.randn(1, 5, 4, 4)
    p2, p3, p4 = fpn([c2, c3])
    inner3 = fpn.lateral[1](c3)
    inner2 = fpn.lateral[0](c2) + inner3.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(p3, fpn.output[1](inner3))
    torch.testing.assert_close(p2, fpn.output[0](inner2))
    torch.testing.assert_close(p4, p3[..., ::2, ::2])
    assert fpn.strides == [8, 16, 32]


def test_bad_backbones_are_one_line(tiny, tiny_clip_dir, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not cached and the hub is unreachable"):
        load_hf_backbone("nobody/no-such-backbone", STAGES)
    with pytest.raises(WeightsNotFoundError, match="folder not found"):
        load_hf_backbone(str(tmp_path / "missing"), STAGES)
    with pytest.raises(FormatError, match="'clip' checkpoint is not a backbone"):
        load_hf_backbone(str(tiny_clip_dir), STAGES)
    with pytest.raises(ConfigError, match=r"\['stage9'\] are not stages.*'stem', 'stage1'"):
        load_hf_backbone(str(tiny["resnet"]), ["stage9"])
