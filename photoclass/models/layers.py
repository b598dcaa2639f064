"""Layers shared by the models: standardized statistics features, and batch norm folded into
the convolution before it."""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std per feature; the statistics are measured on the training features.

    Each spread is floored at a tenth of the median spread: with few training photos some
    statistics barely vary, and dividing by almost nothing turned a new photo's small
    difference into logits in the hundreds (68 photos: test loss 50 without the floor, 0.35
    with it; on the photo sets, no change: benchmarks/README.md)."""

    MIN_STD_FRACTION = 0.1

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def fit_statistics(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(0))
        std = x.std(0)
        self.std.copy_(std.clamp_min(max(1e-6, self.MIN_STD_FRACTION * float(std.median()))))


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds each batch norm into the convolution registered just before it (a sibling), in place, and
    returns `model`: the same outputs in eval mode, without a separate normalization pass.

    For networks that register every convolution right before its own batch norm (timm's
    EfficientNets do); a norm with an activation (timm's BatchNormAct2d) leaves the activation.
    """
    for parent in list(model.modules()):
        previous = None
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.BatchNorm2d)
                and previous is not None
                and previous.out_channels == child.num_features
            ):
                scale = child.weight / torch.sqrt(child.running_var + child.eps)
                bias = previous.bias if previous.bias is not None else torch.zeros_like(child.running_mean)
                previous.weight.mul_(scale.view(-1, 1, 1, 1))
                previous.bias = nn.Parameter((bias - child.running_mean) * scale + child.bias)
                setattr(parent, name, getattr(child, "act", nn.Identity()))
            previous = child if isinstance(child, nn.Conv2d) else None
    return model
