"""One epoch of training, one pass of prediction. Everything else is in callbacks."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

from ..data.loader import BatchLoader


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def train_one_epoch(model: nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer,
                    loss_fn: nn.Module, *, seed: int, bf16: bool = False,
                    step_scheduler: Callable[[], None] | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    desc: str = "train", progress: bool | None = None) -> dict[str, float]:
    """Returns mean loss, accuracy, images, seconds and images/s; stops early on request."""
    model.train()
    torch.manual_seed(seed)  # dropout draws from the global generator
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    with tqdm(total=len(loader), desc=desc, unit="batch", leave=False,
              disable=None if progress is None else not progress) as bar:
        for x, y in loader.batches(seed):
            with autocast(bf16):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step_scheduler is not None:
                step_scheduler()
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / elapsed:.0f}", refresh=False)
            bar.update()
            if should_stop():
                break
    seconds = time.perf_counter() - started
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1), "images": seen,
            "seconds": seconds, "images_per_s": seen / seconds if seconds else 0.0}


@torch.no_grad()
def predict_logits(model: nn.Module, loader: BatchLoader, *, bf16: bool = False,
                   flip_average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float32 logits and (N,) labels, in loader order (no shuffling, no augmentation).

    With `flip_average` (test-time augmentation), each photo is also predicted mirrored and
    the logits returned are the log of the two probabilities' mean.
    """
    model.eval()
    logits, labels = [], []
    for x, y in loader.batches():
        with autocast(bf16):
            out = model(x).float()
            if flip_average:
                out = ((out.softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2).log()
        logits.append(out)
        labels.append(y)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)
