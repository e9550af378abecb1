"""BatchNorm with fixed statistics and affine parameters, as detection fine-tunes pretrained CNNs.

Detection batches are small (1-2 images of 1024 px per GPU), so batch statistics are noise: the
pretrained backbone's running mean and variance are kept, and so are its scale and shift
(detectron2's FrozenBatchNorm2d). y = (x - mean) / sqrt(var + eps) * weight + bias, with every
tensor a buffer: nothing trains, `.train()` changes nothing, and the state dict keeps
BatchNorm's key names, so checkpoints load either way.
"""

from __future__ import annotations

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """(B, C, H, W) -> (B, C, H, W), an affine map fixed at construction."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        state_dict.pop(prefix + "num_batches_tracked", None)  # BatchNorm's counter: not used
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{len(self.weight)}, eps={self.eps}"


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `BatchNorm2d` inside `module` (in place) by a `FrozenBatchNorm2d` holding
    its current statistics and affine parameters; returns `module` (or the replacement when
    `module` is itself a BatchNorm2d)."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.running_mean is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        replaced = freeze_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def fold_into_convolutions(module: nn.Module) -> int:
    """Fold each `FrozenBatchNorm2d` that directly follows a convolution into it, in place: a
    layer holding the two as `convolution` and `normalization`, applied in that order (transformers'
    ResNet layers). The convolution takes weight * scale and bias * scale + shift, the norm
    becomes an identity: the same map in one pass over the activations instead of three.
    Inference only (the state dict's names change). Returns the number of norms folded."""
    folded = 0
    for layer in module.modules():
        conv, norm = getattr(layer, "convolution", None), getattr(layer, "normalization", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(norm, FrozenBatchNorm2d)):
            continue
        with torch.no_grad():
            scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
            shift = norm.bias - norm.running_mean * scale
            fused = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.dilation, conv.groups, True, conv.padding_mode,
            ).to(conv.weight.device, conv.weight.dtype)  # fmt: skip
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            fused.bias.copy_(shift if conv.bias is None else conv.bias * scale + shift)
        fused.requires_grad_(False)
        layer.convolution, layer.normalization = fused, nn.Identity()
        folded += 1
    return folded
