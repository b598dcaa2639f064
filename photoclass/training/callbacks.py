"""What `fit` does besides stepping: each extra is a callback whose state resets every run.

Callbacks run in the order given, after each epoch's validation: early stopping, the
learning-rate schedule, the checkpoint (best weights and `last.ckpt`), the metrics files,
the printed line, then any user hook. `state_dict()` goes into `last.ckpt` so a resumed run
continues exactly.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import warnings
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from ..runs.rundir import RunDir

if TYPE_CHECKING:
    from .state import FitState


class Callback:
    """Hooks of a fit; override what you need. `on_fit_start` resets the state of a run."""

    def on_fit_start(self, fit: FitState) -> None: ...

    def on_resume(self, fit: FitState) -> None:
        """After the state was restored from a checkpoint."""

    def on_batch_end(self, fit: FitState) -> None: ...

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None: ...

    def on_fit_end(self, fit: FitState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Monitor:
    """The best value of one metric so far (min for losses, max for accuracies)."""

    def __init__(self, name: str, min_delta: float = 0.0):
        self.name, self.min_delta = name, min_delta
        self.mode = "max" if name.endswith("acc") else "min"
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record an epoch's metrics; True when the monitored value improved."""
        if self.name not in logs:
            warnings.warn(f"{self.name!r} is monitored but is not among the metrics: {sorted(logs)}", stacklevel=2)
            return False
        value = logs[self.name]
        improved = (value < self.best - self.min_delta) if self.mode == "min" else (value > self.best + self.min_delta)
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = float(state["best"]), int(state["best_epoch"]), int(state["wait"])


class EarlyStopping(Callback):
    """Stops after `patience` epochs without improvement of `monitor` (0: never)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 8, min_delta: float = 0.0):
        self.monitor = Monitor(monitor, min_delta)
        self.patience = patience

    def on_fit_start(self, fit: FitState) -> None:
        self.monitor.reset()

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None:
        self.monitor.update(row["epoch"], row)
        if self.patience > 0 and self.monitor.wait >= self.patience:
            fit.stop_reason = (
                f"early stopping: {self.monitor.name} has not improved for {self.patience} "
                f"epochs; best was epoch {self.monitor.best_epoch}"
            )

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state)


class LRSchedule(Callback):
    """Steps a scheduler after each batch (one-cycle) or each epoch (plateau with `monitor`)."""

    def __init__(self, scheduler, *, per_batch: bool = False, monitor: str = "val_loss"):
        self.scheduler, self.per_batch, self.monitor = scheduler, per_batch, monitor

    def on_batch_end(self, fit: FitState) -> None:
        if self.per_batch:
            self.scheduler.step()

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None:
        if self.per_batch:
            return
        plateau = hasattr(self.scheduler, "num_bad_epochs")  # ReduceLROnPlateau steps on a value
        self.scheduler.step(row[self.monitor]) if plateau else self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class Checkpoint(Callback):
    """The best epoch's weights to RUN/`weights`; everything resume needs to RUN/last.ckpt."""

    def __init__(
        self, run: RunDir, *, weights: str = RunDir.WEIGHTS, monitor: str = "val_loss", best: float | None = None
    ):
        self.run, self.weights = run, weights
        self.monitor = Monitor(monitor)
        self.initial_best = best  # a value to beat from an earlier stage, whose weights are already saved

    def on_fit_start(self, fit: FitState) -> None:
        self.monitor.reset()
        if self.initial_best is not None:
            self.monitor.best = self.initial_best

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None:
        fit.saved_best = self.monitor.update(row["epoch"], row)
        if fit.saved_best:
            self.run.save_weights(fit.module, self.weights)
        self.run.save_checkpoint(fit.checkpoint())

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state)


class MetricsWriter(Callback):
    """RUN/metrics.csv and RUN/timing.csv, rewritten after each epoch (after the checkpoint:
    a row there means its epoch is saved)."""

    def __init__(self, run: RunDir):
        self.run = run

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None:
        self.run.write_metrics(fit.history)


class EpochPrinter(Callback):
    """One line per epoch; `*` marks an epoch whose weights were saved as the best so far."""

    def __init__(self, *, monitor: str = "val_loss", per_second: bool = True, name: str = "the run", acc: str = "acc"):
        self.monitor, self.per_second, self.name, self.acc = monitor, per_second, name, acc

    def on_fit_start(self, fit: FitState) -> None:
        print(f"* marks the best {self.monitor} so far (those weights are kept)", flush=True)

    def on_resume(self, fit: FitState) -> None:
        print(f"resuming {self.name} at epoch {fit.start_epoch + 1}/{fit.epochs}", flush=True)

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None:
        speed = f" ({row['images_per_s']:.0f} img/s)" if self.per_second else ""
        print(
            f"epoch {row['epoch']:>3}/{fit.epochs}  train loss {row['train_loss']:.4f} {self.acc} {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} {self.acc} {row['val_acc']:.4f}  lr {row['lr']:.2g}  "
            f"{row['seconds']:.1f} s{speed}{'  *' if fit.saved_best else ''}",
            flush=True,
        )

    def on_fit_end(self, fit: FitState) -> None:
        if fit.stop_reason:
            print(fit.stop_reason, flush=True)


class EpochHook(Callback):
    """Calls `fn(row)` after each epoch; an exception it raises stops the fit (sweeps prune so)."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]):
        self.fn = fn

    def on_epoch_end(self, fit: FitState, row: dict[str, Any]) -> None:
        self.fn(row)


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
        print(
            "\nphotoclass: stopping after this step and saving; Ctrl-C again to exit at once",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
