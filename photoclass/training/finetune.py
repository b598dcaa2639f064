"""The pieces of LP-FT's second stage: fine-tuning a whole pretrained network on few photos.

Linear probing first, then fine-tuning (Kumar et al., 2022): the head, already fitted on
frozen features, keeps the early updates from distorting the pretrained features. Earlier
layers move less (discriminative rates, as in ULMFiT), the rate warms up then decays on a
cosine, and batch-norm statistics stay as pretrained (small batches estimate them badly).
"""

from __future__ import annotations

import math
import types

import torch
from torch import nn


def discriminative_groups(
    model: nn.Module, lr: float, *, decay: float = 0.5, groups: int = 5, weight_decay: float = 0.0
) -> list[dict]:
    """Optimizer parameter groups from input to output, the last (the classifier) at `lr`.

    The rate falls by `decay` per fifth of the network's depth (with the default `groups`),
    so the first layers learn at `lr * decay**4` however many groups a model has. A model's
    own `layer_groups()` (timm's grouping) is used when it has one; otherwise the parameters
    are cut into `groups` equal chunks in registration order.
    """
    model = getattr(model, "module", model)  # under DistributedDataParallel
    if hasattr(model, "layer_groups"):
        chunks = [[p for p in g if p.requires_grad] for g in model.layer_groups()]
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        last = _last_linear(model)
        head = list(last.parameters()) if last is not None else params[-1:]
        head_ids = {id(p) for p in head}
        body = [p for p in params if id(p) not in head_ids]  # registration order: input to output
        size = max(1, math.ceil(len(body) / max(groups - 1, 1)))
        chunks = [body[i : i + size] for i in range(0, len(body), size)] + [head]
    chunks = [c for c in chunks if c]
    step = (groups - 1) / max(len(chunks) - 1, 1)  # decay exponents per group, spanning groups - 1 in all
    return [
        {"params": chunk, "lr": lr * decay ** (step * (len(chunks) - 1 - i)), "weight_decay": weight_decay}
        for i, chunk in enumerate(chunks)
    ]


def warmup_cosine(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int):
    """Per-step rates: linear from 0 over `warmup_steps`, then a cosine down to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Batch-norm layers stay in eval mode (pretrained statistics) whatever `model.train()`
    says; their scale and shift still learn."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.train = types.MethodType(lambda self, mode=True: self, module)
    return model


def _last_linear(model: nn.Module) -> nn.Linear | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None
