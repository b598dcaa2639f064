"""The learning-rate range test (Smith, 2017): raise the rate every step, watch the loss.

It is `fit` with one callback, `LrFinder`, over the training loader repeated as one long
epoch, as fastai does it: the callback raises the rate after each batch, records the
smoothed loss and ends the fit once the loss diverges."""

from __future__ import annotations

import math
from itertools import count
from typing import Any

import torch
from torch import nn

from .callbacks import Callback
from ..tasks import SINGLE_LABEL, Task
from .loop import fit
from .state import FitState


class LrFinder(Callback):
    """Sets the rate to `start_lr`, then multiplies it after each batch so that it reaches
    `end_lr` at batch `steps`; stops after `steps` batches, or once the smoothed loss passes
    four times its best. `rates` and `losses` (smoothed) are what it saw."""

    def __init__(self, *, start_lr: float = 1e-7, end_lr: float = 1.0, steps: int = 100):
        self.start_lr, self.end_lr, self.steps = start_lr, end_lr, steps
        self.factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))

    def on_fit_start(self, fit: FitState) -> None:
        for group in fit.optimizer.param_groups:
            group["lr"] = self.start_lr
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.average, self.best = 0.0, math.inf

    def on_batch_end(self, fit: FitState) -> None:
        self.average = 0.98 * self.average + 0.02 * fit.batch_loss  # exponential moving average, bias-corrected below
        smoothed = self.average / (1 - 0.98 ** (len(self.rates) + 1))
        self.rates.append(fit.optimizer.param_groups[0]["lr"])
        self.losses.append(smoothed)
        self.best = min(self.best, smoothed)
        if len(self.rates) >= self.steps or smoothed > 4 * self.best or not math.isfinite(smoothed):
            fit.stop_training = True
            return
        for group in fit.optimizer.param_groups:
            group["lr"] *= self.factor

    @property
    def suggestion(self) -> float:
        """A tenth of the rate at the lowest loss, the usual safe choice."""
        finite = [(loss, rate) for loss, rate in zip(self.losses, self.rates) if math.isfinite(loss)]
        return min(finite)[1] / 10 if finite else self.rates[0]


class _Repeated:
    """`loader`'s epochs one after another as one endless epoch, the k-th shuffled with seed + k."""

    def __init__(self, loader: Any, steps: int):
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def batches(self, seed: int = 0):
        for epoch in count():
            yield from self.loader.batches(seed + epoch)


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
    task: Task = SINGLE_LABEL,
) -> tuple[list[float], list[float], float]:
    """(rates, smoothed losses, suggested rate). The rate grows geometrically from `start_lr`
    to `end_lr` over `steps` batches (the loader repeats as needed); the test stops once the
    loss passes four times its best. The suggestion is a tenth of the rate at the lowest loss,
    the usual safe choice."""
    finder = LrFinder(start_lr=start_lr, end_lr=end_lr, steps=steps)
    state = fit(
        model,
        {"train": _Repeated(loader, steps)},
        optimizer=optimizer,
        loss_fn=loss_fn,
        epochs=1,
        seed=seed,
        callbacks=[finder],
        precision=precision,
        progress=False,
        task=task,
    )
    if state.interrupted:  # Ctrl-C: as before fit ran it, the test is abandoned
        raise KeyboardInterrupt
    return finder.rates, finder.losses, finder.suggestion
