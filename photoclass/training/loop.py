"""`fit`: the epoch loop as named steps (train, validate, callbacks); the rest is in callbacks."""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..core.progress import progress_bar
from ..core import distributed
from ..core.device import autocast, grad_scaler
from ..data.loader import BatchLoader
from ..evaluation.predict import predict_logits
from ..tasks import SINGLE_LABEL, Task
from .callbacks import Callback, GracefulInterrupt
from .state import FitState


def fit(
    model: nn.Module,
    loaders: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epochs: int,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    precision: str = "fp32",
    resume: dict[str, Any] | None = None,
    history: Sequence[dict[str, Any]] = (),
    stage: str = "fit",
    progress: bool | None = None,
    task: Task = SINGLE_LABEL,
) -> FitState:
    """Train `model` on loaders["train"], validating on loaders["val"] after each epoch.

    The model and the loaders' batches are on one device; `precision` is fp32, bf16 or
    fp16 (with a gradient scaler). `resume` is a `FitState.checkpoint()` (read back from
    `last.ckpt`). A first Ctrl-C stops after the current batch; the partial epoch is
    dropped and `interrupted` is set. `history` holds the epochs of an earlier stage of the
    same run (LP-FT's probe): this fit numbers its epochs after them. `task` says what is correct.
    """
    device = next(model.parameters()).device
    scaler = grad_scaler(device, precision) if precision == "fp16" else None
    state = FitState(
        model,
        optimizer,
        epochs,
        callbacks,
        scaler,
        history=list(history),
        start_epoch=len(history),
        stage=stage,
        stage_start=len(history),
    )
    for callback in callbacks:
        callback.on_fit_start(state)
    if resume is not None:
        state.restore(resume)
        _each(callbacks, "on_resume", state)
    with GracefulInterrupt() as interrupt:
        for epoch in range(state.start_epoch, epochs):
            state.epoch, state.saved_best = epoch, False
            stats = train_one_epoch(
                model,
                loaders["train"],
                optimizer,
                loss_fn,
                seed=epoch_seed(seed, epoch),
                precision=precision,
                scaler=scaler,
                on_batch_end=lambda loss: _batch_end(callbacks, state, loss),
                should_stop=lambda: interrupt.requested or state.stop_training,
                desc=f"epoch {epoch + 1}/{epochs}",
                progress=progress,
                task=task,
            )
            if interrupt.requested:  # the partial epoch is dropped; resume repeats it
                state.interrupted = True
                return state
            if state.stop_training:  # mid-epoch, on a callback's word: no validation, no row
                break
            stats.update(_over_all_processes(stats, device))
            validated = validate(model, loaders["val"], precision=precision, task=task)
            row = _epoch_row(epoch, stats, validated, lr=optimizer.param_groups[-1]["lr"])
            state.history.append(row)
            for callback in callbacks:
                callback.on_epoch_end(state, row)
            if state.stop_reason:
                break
    _each(callbacks, "on_fit_end", state)
    return state


def _epoch_row(epoch: int, stats: dict[str, float], validated: dict[str, float], *, lr: float) -> dict[str, float]:
    """One row of the history (metrics.csv and timing.csv) for the 0-based `epoch`."""
    return {
        "epoch": epoch + 1,
        "train_loss": stats["loss"],
        "train_acc": stats["acc"],
        **validated,
        "lr": lr,
        "seconds": round(stats["seconds"], 3),
        "images_per_s": round(stats["images_per_s"], 1),
    }


def validate(model: nn.Module, loader, *, precision: str = "fp32", task: Task = SINGLE_LABEL) -> dict[str, float]:
    logits, labels = predict_logits(model, loader, precision=precision)
    return {"val_loss": task.loss(logits, labels), "val_acc": float(task.correct(logits, labels).float().mean())}


def train_one_epoch(
    model: nn.Module,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    *,
    seed: int,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    on_batch_end: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    desc: str = "train",
    progress: bool | None = None,
    task: Task = SINGLE_LABEL,
) -> dict[str, float]:
    """Returns mean loss, accuracy, images, seconds and images/s; stops early on request."""
    model.train()
    torch.manual_seed(seed)  # dropout draws from the global generator
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    with progress_bar(total=len(loader), desc=desc, unit="batch", progress=progress) as bar:
        for x, y in loader.batches(seed):
            with autocast(x.device, precision):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:  # fp16: scale the loss so small gradients do not underflow
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            batch_loss = float(loss.detach())
            if on_batch_end is not None:
                on_batch_end(batch_loss)
            total_loss += batch_loss * len(y)
            correct += int(task.correct(logits, y).sum())
            seen += len(y)
            elapsed = time.perf_counter() - started
            bar.set_postfix(
                loss=f"{total_loss / seen:.3f}",
                acc=f"{correct / seen:.3f}",
                img_s=f"{seen / elapsed:.0f}",
                refresh=False,
            )
            bar.update()
            if should_stop():
                break
    seconds = time.perf_counter() - started
    return {
        "loss": total_loss / max(seen, 1),
        "acc": correct / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds else 0.0,
    }


def _over_all_processes(stats: dict[str, float], device: torch.device) -> dict[str, float]:
    """Loss and accuracy of the epoch over every process's share (unchanged alone)."""
    if not distributed.processes().active:
        return {}
    loss_sum, correct, seen = distributed.sum_across(
        [stats["loss"] * stats["images"], stats["acc"] * stats["images"], stats["images"]], device
    )
    return {
        "loss": loss_sum / max(seen, 1),
        "acc": correct / max(seen, 1),
        "images": seen,
        "images_per_s": seen / stats["seconds"] if stats["seconds"] else 0.0,
    }


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


def _batch_end(callbacks: Sequence[Callback], state: FitState, loss: float) -> None:
    state.batch_loss = loss
    _each(callbacks, "on_batch_end", state)


def _each(callbacks: Sequence[Callback], hook: str, state: FitState) -> None:
    for callback in callbacks:
        getattr(callback, hook)(state)
