"""Training extras with state that resets each run: early stopping, Ctrl-C handling."""
from __future__ import annotations

import math
import os
import signal
import sys
import warnings
from typing import Any


class EarlyStopping:
    """Tracks the best value of `monitor`; asks to stop after `patience` epochs without
    improvement (patience 0: never stops, still tracks the best for checkpointing)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 8, min_delta: float = 0.0):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.mode = "max" if monitor.endswith("acc") else "min"
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record an epoch's metrics; returns True when the monitored value improved."""
        if self.monitor not in logs:
            warnings.warn(f"EarlyStopping monitors {self.monitor!r}, which is not among the "
                          f"metrics: {sorted(logs)}", stacklevel=2)
            return False
        value = logs[self.monitor]
        improved = (value < self.best - self.min_delta) if self.mode == "min" else (value > self.best + self.min_delta)
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = float(state["best"]), int(state["best_epoch"]), int(state["wait"])


class GracefulInterrupt:
    """First Ctrl-C: ask the loop to stop after the current step; second: exit at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> GracefulInterrupt:
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. some notebook runners): no handler
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            print("\nphotoclass: second Ctrl-C, exiting now", file=sys.stderr, flush=True)
            os._exit(130)
        self.requested = True
        print("\nphotoclass: stopping after this step and saving; Ctrl-C again to exit at once",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
