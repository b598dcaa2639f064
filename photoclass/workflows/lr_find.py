"""`lr_find()`: the learning-rate range test on a model and data, as `train` would fit them."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import PrepareConfig, TrainConfig, check_int, check_positive, takes_options
from ..core import distributed
from ..core.errors import PhotoclassError
from ..core.atomic import check_writable
from ..core.device import resolve_device
from ..core.torchsetup import setup_torch
from ..data.outside import check_outside
from ..data.prepare import prepare
from ..evaluation import plots
from ..training.lr_find import lr_range_test
from ..training.optim import create_optimizer
from ..models.registry import choose_model
from .train import _resolve_options, _resolved, _trained_part, build_model, run_task


@dataclass
class LrFinding:
    suggestion: float  # a tenth of the rate at the lowest smoothed loss
    rates: list[float]
    losses: list[float]
    plot: Path

    def __repr__(self) -> str:
        return f"LrFinding(suggestion={self.suggestion:.2e}, {len(self.rates)} steps, plot={str(self.plot)!r})"


@takes_options(TrainConfig, PrepareConfig)
def lr_find(
    data: str | os.PathLike,
    *,
    model: str | nn.Module | None = None,
    out: str | os.PathLike = "lr-find.png",
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    progress: bool | None = None,
    **options: Any,
) -> LrFinding:
    """Raise the rate from `start_lr` to `end_lr` over `steps` batches of the part that `train`
    would fit (the head on cached features for pretrained models); plot the loss to `out`."""
    check_int("steps", steps, 5, 100_000)
    check_positive("start_lr", start_lr)
    if not (isinstance(end_lr, (int, float)) and end_lr > start_lr):
        raise PhotoclassError(f"`end_lr` must be above start_lr ({start_lr}). Received: end_lr={end_lr!r}")
    config, prep, data = _resolve_options(data, model, options)
    out = check_outside(Path(out), data)
    check_writable(out.parent if str(out.parent) else Path("."), hint="pass --out a file in a folder you can write")
    custom = model if isinstance(model, nn.Module) else None
    choice = choose_model(
        config.model if custom is None else custom, image_size=config.image_size, weights=config.weights
    )
    spec = choice.input_spec
    device = resolve_device(config.device)
    setup_torch(config.threads, config.seed)
    dataset = prepare(data, config=dataclasses.replace(prep, image_size=spec.size), progress=progress)
    task = run_task(config, prep, dataset.summary)  # with its `loss`
    net = build_model(config, choice, len(dataset.classes), device, channels=dataset.summary.get("channels", 3))
    spec = net.input_spec
    config = _resolved(config, choice, net, device)
    trained, loaders, _ = _trained_part(net, dataset, config, spec, distributed.Processes(), progress)
    optimizer = create_optimizer(trained, config.optimizer, lr=start_lr, weight_decay=config.weight_decay)
    rates, losses, suggestion = lr_range_test(
        trained,
        loaders["train"],
        optimizer,
        task.loss_fn(label_smoothing=config.label_smoothing),
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        precision=config.precision,
        seed=config.seed,
        task=task,
    )
    plots.lr_curve(rates, losses, suggestion, out)
    return LrFinding(suggestion, rates, losses, out)
