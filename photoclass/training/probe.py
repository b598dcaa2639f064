"""The classifier on frozen features as a logistic regression: L-BFGS, with its L2 strength
chosen by grouped, stratified cross-validation on the training photos (on a share of them
past `CV_LIMIT`, so that the cost grows with the photos as the final fit's does).

The linear-probe literature finds this as strong as trained adapters; on the photo sets it
beat 40 epochs of AdamW on the same features (benchmarks/README.md, suite.py). Strength is
`C` as in scikit-learn: the loss is the task's mean loss (cross-entropy) + ||W||^2 / (2 C N).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..data.split import grouped_folds
from ..tasks import SINGLE_LABEL, Task

C_GRID = tuple(float(c) for c in 10.0 ** np.arange(-3.0, 1.01, 0.5))  # 0.001 to 10
FOLDS = 5
CV_LIMIT = 10_000  # photos: past this, C is chosen on one of ceil(N / CV_LIMIT) grouped, stratified folds


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c: float,
    *,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = 100,
    task: Task = SINGLE_LABEL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) minimizing the task's mean loss + ||W||^2 / (2 c N), in x's dtype, full batch."""
    loss_fn = task.loss_fn()
    n, features = x.shape
    w = (init[0].clone() if init else torch.zeros(num_classes, features, dtype=x.dtype)).requires_grad_()
    b = (init[1].clone() if init else torch.zeros(num_classes, dtype=x.dtype)).requires_grad_()
    _lbfgs([w, b], lambda: loss_fn(x @ w.T + b, y) + (w * w).sum() / (2 * c * n), max_iter)
    return w.detach(), b.detach()


def choose_c(
    x: torch.Tensor,
    y: torch.Tensor,
    groups: np.ndarray,
    num_classes: int,
    *,
    seed: int,
    grid=C_GRID,
    folds: int = FOLDS,
    task: Task = SINGLE_LABEL,
) -> tuple[float, list[float]]:
    """The C of `grid` with the best out-of-fold accuracy (grouped, stratified folds; among
    equals the strongest regularization), and the accuracy of each C."""
    fold = grouped_folds(task.strata(y.numpy()), groups, folds=folds, seed=seed)
    correct = np.zeros(len(grid))
    for k in range(folds):
        train, held = torch.from_numpy(fold != k), torch.from_numpy(fold == k)
        if not held.any() or not train.any():
            continue
        init = None
        for i, c in enumerate(grid):  # strong to weak: each fit starts from the last one
            init = fit_logistic(x[train], y[train], num_classes, c, init=init, task=task)
            correct[i] += task.fold_score(x[held] @ init[0].T + init[1], y[held])
    accuracy = (correct / len(y)).tolist()
    return grid[int(np.argmax(accuracy))], accuracy


@torch.no_grad()
def fit_linear_probe(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    groups: np.ndarray,
    *,
    seed: int,
    task: Task = SINGLE_LABEL,
) -> dict:
    """Set the last layer of `head` (an nn.Linear, after e.g. a standardization) to the
    cross-validated logistic regression on `features`; a head that says how its last layer
    sees the features (`probe_parts`, e.g. a `RegionHead`) is then refitted whole from there.
    Returns C, the accuracies of the grid and the seconds."""
    transform, linear = _probe_parts(head)
    started = time.perf_counter()
    head.eval()
    # float64 where it is cheap; past CV_LIMIT float32 halves the largest array of a big run
    dtype = torch.float64 if len(features) <= CV_LIMIT else torch.float32
    x = None  # filled a slice at a time: no float32 copy of it all
    for start in range(0, len(features), 4096):
        part = transform(features[start : start + 4096])
        if x is None:
            x = torch.empty((len(features), part.shape[1]), dtype=dtype)
        x[start : start + len(part)] = part.to(dtype).cpu()
    y = labels.cpu()
    groups = np.asarray(groups)
    share = np.arange(len(y))
    if len(y) > CV_LIMIT:  # 45 fits on every photo would grow the head's cost past the backbone's
        strata = task.strata(y.numpy())
        share = np.flatnonzero(grouped_folds(strata, groups, folds=-(-len(y) // CV_LIMIT), seed=seed) == 0)
    c, accuracy = choose_c(x[share], y[share], groups[share], linear.out_features, seed=seed, task=task)
    w, b = fit_logistic(x, y, linear.out_features, c, task=task)
    del x
    linear.weight.copy_(w.to(linear.weight))
    if linear.bias is not None:
        linear.bias.copy_(b.to(linear.bias))
    if not isinstance(head, nn.Sequential):
        refit_head(head, linear, features, labels, c, task=task)
    return {
        "solver": "lbfgs",
        "C": c,
        "folds": FOLDS,
        "photos": len(y),
        "cv_photos": len(share),
        "cv_accuracy": dict(zip(map(str, C_GRID), accuracy)),
        "seconds": time.perf_counter() - started,
    }


def _probe_parts(head: nn.Module):
    if hasattr(head, "probe_parts"):
        return head.probe_parts()
    if not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.Linear):
        raise TypeError("a linear probe needs the head as nn.Sequential(..., nn.Linear) or with probe_parts()")
    return head[:-1], head[-1]


def refit_head(
    head: nn.Module, linear: nn.Linear, features: torch.Tensor, labels: torch.Tensor, c: float, *, task: Task
) -> None:
    """`linear`'s weights refitted through the whole of `head` (full batch, L-BFGS), from the
    logistic regression's solution, with its loss and strength C."""
    loss_fn = task.loss_fn()
    n = len(labels)
    params = [p for p in (linear.weight, linear.bias) if p is not None]
    weight = linear.weight
    _lbfgs(params, lambda: loss_fn(head(features), labels) + (weight * weight).sum() / (2 * c * n), 60)


def _lbfgs(params: list[torch.Tensor], objective, max_iter: int) -> None:
    """Minimize `objective()` over `params` with full-batch L-BFGS (strong Wolfe line search)."""
    optimizer = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-4,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
