"""`sweep()`: an Optuna search whose trials are `train()` runs."""
from __future__ import annotations

import os
from typing import Any

from ..experiments.sweep import sweep as run_sweep
from .train import train


def sweep(data: str | os.PathLike, **kwargs: Any):
    """Search models and options on `data`; see `photoclass.experiments.sweep.sweep` for the arguments."""
    return run_sweep(data, train=train, **kwargs)
