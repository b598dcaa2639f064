"""Logits of a model over a loader, in order: what evaluation, validation and reports share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.progress import progress_bar
from ..core.device import autocast
from ..data.loader import BatchLoader


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    loader: BatchLoader,
    *,
    precision: str = "fp32",
    flip_average: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool | None = False,
    desc: str = "predict",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float32 logits and (N,) labels on the CPU, in loader order (no shuffling, no
    augmentation); the model runs where the loader's batches are, in `precision`.

    With `flip_average` (test-time augmentation: a task's `average_flipped`), each photo is also
    predicted mirrored and the logits returned are the two combined. `progress=None` shows a bar
    only on a terminal; False (validation inside training) never.
    """
    model.eval()
    logits, labels = [], []
    for x, y in progress_bar(loader.batches(), total=len(loader), desc=desc, unit="batch", progress=progress):
        with autocast(x.device, precision):
            out = model(x).float()
            if flip_average is not None:
                out = flip_average(out, model(x.flip(-1)).float())
        logits.append(out.cpu())
        labels.append(y.cpu())
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)
