"""Logits of a model over a loader, in order: what evaluation, validation and reports share."""

from __future__ import annotations

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
    flip_average: bool = False,
    progress: bool | None = False,
    desc: str = "predict",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float32 logits and (N,) labels on the CPU, in loader order (no shuffling, no
    augmentation); the model runs where the loader's batches are, in `precision`.

    With `flip_average` (test-time augmentation), each photo is also predicted mirrored and
    the logits returned are the log of the two probabilities' mean. `progress=None` shows a bar
    only on a terminal; False (validation inside training) never.
    """
    model.eval()
    logits, labels = [], []
    for x, y in progress_bar(loader.batches(), total=len(loader), desc=desc, unit="batch", progress=progress):
        with autocast(x.device, precision):
            out = model(x).float()
            if flip_average:
                out = ((out.softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2).log()
        logits.append(out.cpu())
        labels.append(y.cpu())
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)
