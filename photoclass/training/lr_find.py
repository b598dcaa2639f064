"""The learning-rate range test (Smith, 2017): raise the rate every step, watch the loss."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.device import autocast


def lr_range_test(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    steps: int = 100,
    precision: str = "fp32",
    seed: int = 0,
) -> tuple[list[float], list[float], float]:
    """(rates, smoothed losses, suggested rate). The rate grows geometrically from `start_lr`
    to `end_lr` over `steps` batches (the loader repeats as needed); the test stops once the
    loss passes four times its best. The suggestion is a tenth of the rate at the lowest loss,
    the usual safe choice."""
    factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    for group in optimizer.param_groups:
        group["lr"] = start_lr
    model.train()
    torch.manual_seed(seed)
    rates, losses, average, best = [], [], 0.0, math.inf
    epoch = 0
    while len(rates) < steps:
        for x, y in loader.batches(seed + epoch):
            with autocast(x.device, precision):
                loss = loss_fn(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            average = 0.98 * average + 0.02 * float(loss.detach())  # exponential moving average, bias-corrected below
            smoothed = average / (1 - 0.98 ** (len(rates) + 1))
            rates.append(optimizer.param_groups[0]["lr"])
            losses.append(smoothed)
            best = min(best, smoothed)
            if len(rates) >= steps or smoothed > 4 * best or not math.isfinite(smoothed):
                return rates, losses, _suggestion(rates, losses)
            for group in optimizer.param_groups:
                group["lr"] *= factor
        epoch += 1
    return rates, losses, _suggestion(rates, losses)


def _suggestion(rates: list[float], losses: list[float]) -> float:
    finite = [(loss, rate) for loss, rate in zip(losses, rates) if math.isfinite(loss)]
    return min(finite)[1] / 10 if finite else rates[0]
