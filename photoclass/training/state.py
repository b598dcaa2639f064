"""`FitState`: what `fit` and its callbacks share while a model trains."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

import torch
from torch import nn

from ..core import distributed


@dataclass
class FitState:
    """What callbacks see: the model and optimizer, the history so far, and the stop flags."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    callbacks: Sequence[Any] = ()  # training.callbacks.Callback
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0  # 0-based; > 0 when resumed
    epoch: int = 0  # 0-based, the epoch in progress
    saved_best: bool = False  # this epoch's weights were kept as the best so far
    stop_reason: str = ""  # set by a callback to stop after this epoch
    interrupted: bool = False
    stop_training: bool = False  # set by a callback's on_batch_end to end the fit after that batch (lr_find)
    batch_loss: float = math.nan  # the loss of the batch just trained, for on_batch_end
    stage: str = "fit"  # a name for this fit within a run (LP-FT has two)
    stage_start: int = 0  # epochs of earlier stages, in `history` before this one's

    @property
    def stopped_early(self) -> bool:
        return bool(self.stop_reason)

    @property
    def module(self) -> nn.Module:
        """The network itself, also when it is wrapped for data-parallel training."""
        return self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue after this epoch (`last.ckpt`)."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "processes": distributed.processes().world,
            "stage": self.stage,
            "stage_start": self.stage_start,
            "history": self.history,
            "epoch": self.epoch,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.module.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        states = checkpoint.get("callbacks", {})
        for callback in self.callbacks:
            if type(callback).__name__ in states:
                callback.load_state_dict(states[type(callback).__name__])
        if self.scaler is not None and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.history = list(checkpoint["history"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.stage_start = int(checkpoint.get("stage_start", 0))
