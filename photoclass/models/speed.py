"""What a model costs: parameters and GFLOPs without allocating it, and images/s on this machine.

Counting runs on the meta device (shapes only, no memory), so listing a ViT-g costs no more
than listing a ResNet. Speed is measured with random weights, batch 8, fp32, one warm-up.
An estimate divides a measured FLOP rate by the model's GFLOPs: that of a small dense CNN,
or of EfficientNet-Lite0 for models whose depthwise convolutions, slow per FLOP, do over 5%
of the work (measured on a 2-core EPYC: dense CNNs and ViTs 100-130 GFLOP/s, EfficientNets
35-40).
"""

from __future__ import annotations

import time
import warnings
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

DENSE, DEPTHWISE = "small-resnet", "efficientnet-lite0"  # the references of an estimate
DEPTHWISE_SHARE = 0.05
BATCH = 8


class Cost(NamedTuple):
    params: int
    flops: int  # per image, 2 per multiply-add
    depthwise: float  # the share of `flops` in depthwise convolutions


def cost(name: str, size: int | None = None, classes: int = 10) -> Cost:
    """What a registered or timm model costs at `size` (its own by default), built on the meta device."""
    from .registry import create_model, model_info

    size = size or model_info(name).input_spec.size
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = create_model(name, classes, input_size=size, pretrained=False)
    depthwise = 0

    def count(conv, args, out):
        nonlocal depthwise
        if conv.groups > 1 and conv.groups == conv.in_channels:
            depthwise += 2 * out.numel() * conv.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    counter = FlopCounterMode(display=False)
    try:
        with counter:  # with grad: the counter's module tracker hooks into autograd (timm's attention pools)
            model.eval()(torch.zeros(1, model.input_spec.channels, size, size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    flops = int(counter.get_total_flops())
    return Cost(sum(p.numel() for p in model.parameters()), flops, depthwise / max(flops, 1))


def images_per_s(model: nn.Module, size: int, channels: int = 3, *, batch: int = BATCH, repeats: int = 2) -> float:
    """Forward passes of `batch` random images a second on this machine (fp32, the best of `repeats`)."""
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    model = model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up: oneDNN picks its kernels
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return batch / best


def measured(name: str, size: int | None = None) -> float:
    """`name`'s images/s here, with random weights at `size` (its own by default)."""
    from .registry import create_model, model_info

    size = size or model_info(name).input_spec.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(name, 10, input_size=size, pretrained=False)
    return images_per_s(model, size, model.input_spec.channels)


@lru_cache(maxsize=2)
def flops_per_s(reference: str) -> float:
    """This machine's FLOP/s on a reference model, measured once per process."""
    return measured(reference) * cost(reference).flops


def estimated(model_cost: Cost) -> float:
    """Images/s for a model of this cost, at its kind's reference FLOP/s measured here."""
    reference = DEPTHWISE if model_cost.depthwise > DEPTHWISE_SHARE else DENSE
    return flops_per_s(reference) / max(model_cost.flops, 1)
