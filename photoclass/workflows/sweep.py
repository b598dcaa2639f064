"""`sweep()`: an Optuna search whose trials are `train()` runs."""

from __future__ import annotations

import inspect
import os
from typing import Any

from ..experiments.sweep import sweep as run_sweep
from .train import train


def sweep(data: str | os.PathLike, **kwargs: Any):
    """Search models and options on `data`, each trial a `train()` run; returns the Optuna study."""
    return run_sweep(data, train=train, **kwargs)


_searched = inspect.signature(run_sweep)  # shown as sweep's own: every argument but `train`
sweep.__signature__ = _searched.replace(parameters=[p for p in _searched.parameters.values() if p.name != "train"])
