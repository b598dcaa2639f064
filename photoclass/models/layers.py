"""Layers shared by the models: standardized statistics features, a classifier that also looks
at each class's best region, and batch norm folded into the convolution before it."""

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


def region_means(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, grid * grid * C): the mean of each cell of a grid x grid partition
    (adaptive pooling's cells, sliced: exports handle sizes the grid does not divide)."""
    h, w = x.shape[-2:]
    if (h, w) == (grid, grid):  # a cell is a location
        return x.flatten(2).transpose(1, 2).flatten(1)
    rows = [(h * i // grid, -(-h * (i + 1) // grid)) for i in range(grid)]
    cols = [(w * i // grid, -(-w * (i + 1) // grid)) for i in range(grid)]
    return torch.cat([x[:, :, a:b, c:d].mean(dim=(2, 3)) for a, b in rows for c, d in cols], 1)


class RegionHead(nn.Module):
    """A linear classifier on pooled features, plus, for each class, how much its best region of
    a grid scores above the mean of its regions (class-specific residual attention, CSRA, Zhu &
    Wu 2021, at its max-pooling limit): a thing filling a quarter of the photo is not averaged
    away. The regions are scored with the classifier's own weights for the head's channels.

    Its input is the pooled features (the head's mean channels last), then the regions' means.
    """

    def __init__(self, pooled: int, channels: int, regions: int, num_classes: int, dropout: float, weight: float = 1.0):
        super().__init__()
        self.pooled, self.channels, self.regions, self.weight = pooled, channels, regions, weight
        self.standardize = Standardize(pooled)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(pooled, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, pooled + regions * channels) -> (B, classes)
        logits = self.fc(self.dropout(self.standardize(features[:, : self.pooled])))
        head = slice(self.pooled - self.channels, self.pooled)
        cells = features[:, self.pooled :].unflatten(1, (self.regions, self.channels))
        weight = self.fc.weight[:, head] / self.standardize.std[head]  # standardized, without a copy of the cells
        scores = cells @ weight.T - weight @ self.standardize.mean[head]
        return logits + self.weight * (scores.amax(1) - scores.mean(1))

    def fit_statistics(self, features: torch.Tensor) -> None:
        self.standardize.fit_statistics(features[:, : self.pooled])

    def probe_parts(self):
        """(the features as the last linear layer sees them, that layer): for the one-solve fit,
        which then refines the whole head (training/probe.py)."""
        return lambda features: self.standardize(features[:, : self.pooled]), self.fc


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
