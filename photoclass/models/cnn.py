"""Small CNNs trained from scratch: the classic Keras weather models and a compact modern one."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_relu_pool(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.ReLU(inplace=True), nn.MaxPool2d(2)]


class SeedBaseline(nn.Module):
    """Keras: Rescaling, Conv(16)-Pool, Conv(32)-Pool, Conv(64)-Pool, Dropout(0.2), Flatten,
    Dense(512), Dense(classes). Rescaling happens in the input spec (mean 0, std 1)."""

    def __init__(self, num_classes: int, input_size: int = 180, dropout: float = 0.2, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_relu_pool(in_channels, 16), *_conv_relu_pool(16, 32), *_conv_relu_pool(32, 64), nn.Dropout(dropout)
        )
        side = input_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 180, 180) -> (B, classes)
        return self.classifier(self.features(x))


class SeedDeep(nn.Module):
    """Conv 32(5x5)-64-128-256-512-512, each with max pooling, then Dense 512-256-128."""

    def __init__(self, num_classes: int, input_size: int = 180, dropout: float = 0.3, in_channels: int = 3):
        super().__init__()
        widths = [32, 64, 128, 256, 512, 512]
        layers, cin = [], in_channels
        for i, w in enumerate(widths):
            layers += _conv_relu_pool(cin, w, kernel=5 if i == 0 else 3)
            cin = w
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(512 * side * side, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SeedBN(nn.Module):
    """Pairs of Conv+BatchNorm+ReLU at 32/64/128/256 with pooling, global average pooling,
    Dense 512 and 128 with Dropout(0.5)."""

    def __init__(self, num_classes: int, dropout: float = 0.5, in_channels: int = 3):
        super().__init__()
        layers, cin = [], in_channels
        for w in (32, 64, 128, 256):
            layers += _conv_bn_relu(cin, w) + _conv_bn_relu(w, w) + [nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(256, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with a (1x1 when widths differ) shortcut, then max pooling."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(cin, cout), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        )
        self.shortcut = (
            nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.MaxPool2d(2))

    def forward(self, x):
        return self.out(self.body(x) + self.shortcut(x))


class CompactCNN(nn.Module):
    """Two strided stem convolutions, then three residual stages (64-128-256) with max
    pooling, global pooling and dropout: 1.2 M parameters, about 0.18 GMAC at 128 px."""

    def __init__(self, num_classes: int, width: int = 64, dropout: float = 0.2, in_channels: int = 3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, 24, stride=2),
            *_conv_bn_relu(24, w // 2, stride=2),  # 128 -> 32 px
            ResidualBlock(w // 2, w),
            ResidualBlock(w, 2 * w),
            ResidualBlock(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, x):  # (B, 3, 128, 128) -> (B, classes)
        return self.classifier(self.features(x))


@register_model(
    "seed-baseline",
    input_size=180,
    fixed_size=True,
    description="classic Keras weather CNN: 3 conv-pool, dropout, dense 512",
)
def seed_baseline(num_classes: int, **kw) -> nn.Module:
    return SeedBaseline(num_classes, **kw)


@register_model(
    "seed-deep", input_size=180, fixed_size=True, description="six conv-pool stages 32(5x5)-512, dense 512-256-128"
)
def seed_deep(num_classes: int, **kw) -> nn.Module:
    return SeedDeep(num_classes, **kw)


@register_model(
    "seed-bn", input_size=180, description="conv+batchnorm pairs 32-256, global pooling, dense 512-128, dropout 0.5"
)
def seed_bn(num_classes: int, **kw) -> nn.Module:
    return SeedBN(num_classes, **kw)


@register_model(
    "compact-cnn",
    input_size=128,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    description="compact residual CNN (1.2M params) that trains from scratch on a CPU",
)
def compact_cnn(num_classes: int, **kw) -> nn.Module:
    return CompactCNN(num_classes, **kw)
