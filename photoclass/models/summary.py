"""`model.summary()` for any `nn.Module`: each layer with its output shape and parameters.

A forward pass of one zero image records every leaf module's output (forward hooks); the
table lists them in call order, like Keras.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class LayerRow:
    name: str  # the module's path in the model, e.g. features.0
    kind: str  # its class, e.g. Conv2d
    output: list[int]  # without the batch dimension
    params: int


def summarize(model: nn.Module, size: int, channels: int = 3) -> dict:
    """{"layers": [LayerRow as dict], "total", "trainable", "input": [C, H, W], "flops"} for one
    (channels, size, size) input; the model is left as it was."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue  # containers: their leaves are listed

        def record(mod, args, out, name=name):
            out = out[0] if isinstance(out, (tuple, list)) else out
            shape = list(out.shape[1:]) if isinstance(out, torch.Tensor) else []
            rows.append(
                LayerRow(name, type(mod).__name__, shape, sum(p.numel() for p in mod.parameters(recurse=False)))
            )

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # counted on a shapes-only copy: there attention is plain matrix products, which a CPU's
    # fused attention kernel would hide from the counter (ViT-S/14 at 224 px: 11.0 GFLOPs, not 12.2)
    counter = FlopCounterMode(display=False)
    with counter:  # with grad: the counter's module tracker hooks into autograd
        copy.deepcopy(model).to("meta").eval()(torch.zeros(1, channels, size, size, device="meta"))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "input": [channels, size, size],
        "layers": [asdict(r) for r in rows],
        "total": total,
        "trainable": trainable,
        "flops": int(counter.get_total_flops()),
    }


def format_summary(summary: dict, title: str = "") -> str:
    """The summary as a fixed-width table, totals last."""
    rows = summary["layers"]
    name_w = max([len(r["name"]) + len(r["kind"]) + 3 for r in rows] + [20])
    lines = [title] if title else []
    lines += [f"{'layer (type)':<{name_w}}  {'output shape':<20}{'params':>12}", "-" * (name_w + 34)]
    for r in rows:
        shape = "(" + ", ".join(map(str, r["output"])) + ")"
        lines.append(f"{r['name'] + ' (' + r['kind'] + ')':<{name_w}}  {shape:<20}{r['params']:>12,}")
    lines += [
        "-" * (name_w + 34),
        f"input: {tuple(summary['input'])}",
        f"total params: {summary['total']:,}",
        f"trainable params: {summary['trainable']:,}",
        f"non-trainable params: {summary['total'] - summary['trainable']:,}",
        f"GFLOPs per image: {summary['flops'] / 1e9:.3g} (2 per multiply-add of convolutions and matrix products)",
    ]
    return "\n".join(lines)
