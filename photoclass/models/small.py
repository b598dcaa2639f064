"""Networks for small images (MNIST's 28 px, CIFAR's 32 px), trained from scratch.

`seed-mnist` and `seed-cifar` are the course CNNs layer for layer (Keras's 'valid'
padding, so their trainable parameters match Keras's `model.summary()`, which also counts
batch norm's moving statistics as non-trainable: 384 more for seed-mnist); `small-resnet` is the
one to use: a residual net with the tricks that make airbench-class CIFAR-10 training fast
(batch-norm everywhere, max-pooled stages, a scaled linear head, label smoothing,
flip + translate augmentation, warm-up, test-time flips).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import PhotoclassError
from .registry import register_model


def _flat_side(name: str, input_size: int, own: int) -> int:
    """The side of the last feature map: two unpadded 3x3 convolutions, a 2x2 pooling, twice."""
    side = ((input_size - 4) // 2 - 4) // 2
    if side < 1:
        raise PhotoclassError(
            f"{name} does not run at {input_size} px: its unpadded convolutions and poolings "
            f"need 16 px or more. HINT: its own size is {own}."
        )
    return side


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True)]  # Keras Conv2D(cout, 3, activation="relu")


class SeedMNIST(nn.Module):
    """Conv64-Conv64-MaxPool-BN-Dropout0.25, Conv128-Conv128-MaxPool-BN-Dropout0.25, Flatten, Dense."""

    def __init__(self, num_classes: int, input_size: int = 28, in_channels: int = 1, dropout: float = 0.25):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(in_channels, 64),
            *_conv(64, 64),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(64, eps=1e-3),
            nn.Dropout(dropout),
            *_conv(64, 128),
            *_conv(128, 128),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(128, eps=1e-3),
            nn.Dropout(dropout),
        )
        side = _flat_side("seed-mnist", input_size, 28)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(128 * side * side, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, classes)
        return self.classifier(self.features(x))


class SeedCIFAR(nn.Module):
    """Conv64-Conv64-MaxPool-Dropout0.4, Conv128-Conv128-MaxPool-Dropout0.4, Flatten,
    Dense1024-Dense1024, Dense: 4,597,834 parameters for 10 classes at 32 px."""

    def __init__(self, num_classes: int, input_size: int = 32, in_channels: int = 3, dropout: float = 0.4):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(in_channels, 64),
            *_conv(64, 64),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            *_conv(64, 128),
            *_conv(128, 128),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        )
        side = _flat_side("seed-cifar", input_size, 32)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, classes)
        return self.classifier(self.features(x))


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


class SmallResNet(nn.Module):
    """airbench's shape: a 2x2 stem, then three stages of conv-pool-BN and a residual
    conv-BN, widths 64-256-256, global max pooling and a linear head scaled by 1/9."""

    def __init__(self, num_classes: int, in_channels: int = 3, widths=(64, 256, 256), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 24, 2, padding=0, bias=False), nn.BatchNorm2d(24), nn.GELU()]
        cin = 24
        for w in widths:
            layers.append(_Stage(cin, w))
            cin = w
        self.features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes, bias=False))
        self.scale = 1 / 9  # small initial logits: the head learns faster (airbench)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, classes)
        return self.classifier(self.features(x)) * self.scale


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.GELU()
        )
        self.body = nn.Sequential(*_conv_bn(cout, cout))

    def forward(self, x):
        x = self.down(x)
        return x + self.body(x)


@register_model(
    "seed-mnist",
    input_size=28,
    channels=1,
    fixed_size=True,
    epochs=15,
    augment="rotate=72",
    batch_size=128,
    description="course CNN for 28x28 grey digits: conv 64-64, 128-128, BN, dropout",
)
def seed_mnist(num_classes: int, **kw) -> nn.Module:
    return SeedMNIST(num_classes, **kw)


@register_model(
    "seed-cifar",
    input_size=32,
    fixed_size=True,
    epochs=30,
    augment="none",
    optimizer="rmsprop",
    lr=1e-3,
    weight_decay=0.0,
    batch_size=64,
    schedule="none",
    description="course CNN for 32x32 colour: conv 64-64, 128-128, dropout, dense 1024-1024 (4.6M)",
)
def seed_cifar(num_classes: int, **kw) -> nn.Module:
    return SeedCIFAR(num_classes, **kw)


@register_model(
    "small-resnet",
    input_size=32,
    mean=(0.49, 0.48, 0.45),
    std=(0.25, 0.24, 0.26),
    epochs=20,
    augment="hflip,shift=0.0625",
    label_smoothing=0.2,
    schedule="onecycle",
    lr=2e-3,
    batch_size=256,
    tta=True,
    description="recommended from scratch at 32 px: residual conv-pool-BN stages, "
    "label smoothing, flip+translate, warm-up, test-time flips (1.97M)",
)
def small_resnet(num_classes: int, **kw) -> nn.Module:
    kw.pop("input_size", None)
    return SmallResNet(num_classes, **kw)
