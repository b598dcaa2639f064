"""PNG plots for a run: learning curves, confusion matrix, image grids."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from ..core.atomic import write_bytes_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def learning_curves(history: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", ms=3, label="val")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def regularization_curve(cv_accuracy: dict[str, float], chosen: float, folds: int, path: Path) -> None:
    """Out-of-fold accuracy against the logistic regression's strength C, the chosen C marked."""
    _marked_log_curve(
        [float(c) for c in cv_accuracy],
        list(cv_accuracy.values()),
        chosen,
        path,
        label=f"{folds}-fold out-of-fold accuracy",
        marked=f"chosen C = {chosen:g}",
        xlabel="C (inverse L2 strength; right: weaker regularization)",
        ylabel="accuracy",
        title="the classifier's regularization, by cross-validation",
    )


def _marked_log_curve(
    x, y, mark: float, path: Path, *, label: str | None, marked: str, xlabel: str, ylabel: str, title: str | None = None
) -> None:
    """y against x on a log axis, with a dashed line at x = `mark`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(x, y, "o-" if len(x) < 30 else "-", ms=4, label=label)
    ax.axvline(mark, color="tab:red", linestyle="--", label=marked)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def confusion_matrix(
    matrix: Sequence[Sequence[int]], classes: list[str], path: Path, title: str = "confusion matrix (test)"
) -> None:
    plt = _pyplot()
    m = np.asarray(matrix)
    size = max(3.5, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    _save(fig, path)


CAPTION_CHARS = 26  # a line of 8-pt caption text that fits a 2.2-in tile without reaching the next
CAPTION_LINES = 3


def fit_caption(caption: str, chars: int = CAPTION_CHARS, lines: int = CAPTION_LINES) -> str:
    """`caption` wrapped to lines of at most `chars` characters; past `lines` lines its middle
    gives way to '...', so that its end (a confidence, say) stays."""
    wrapped = textwrap.wrap(caption, chars, break_long_words=True, break_on_hyphens=False) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[: lines - 1] + ["..." + caption[-(chars - 3) :]]
    return "\n".join(wrapped)


def image_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], path: Path, *, columns: int = 6, title: str = ""
) -> None:
    """A grid of (H, W, 3) uint8 images with a caption over each, wrapped to fit its tile."""
    plt = _pyplot()
    columns = max(1, min(columns, len(images)))
    rows = max(1, (len(images) + columns - 1) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False, layout="constrained"
    )  # room for each caption's lines and the title
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        ax.imshow(image)
        ax.set_title(fit_caption(caption), fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def overlaid_curves(histories: dict[str, list[dict[str, Any]]], out) -> None:
    """Validation accuracy and loss, and training loss, of several runs on shared axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, history in histories.items():
        epochs = [int(h["epoch"]) for h in history]
        for ax, key in zip(axes, ("val_acc", "val_loss", "train_loss")):
            ax.plot(epochs, [float(h[key]) for h in history], "o-", ms=2, label=name)
    for ax, title in zip(axes, ("validation accuracy", "validation loss", "training loss")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def lr_curve(rates: Sequence[float], losses: Sequence[float], suggestion: float, path: Path) -> None:
    """Smoothed training loss against the learning rate (log scale), the suggestion marked."""
    _marked_log_curve(
        rates,
        losses,
        suggestion,
        path,
        label=None,
        marked=f"suggested {suggestion:.1e}",
        xlabel="learning rate",
        ylabel="training loss (smoothed)",
    )


# what a calibration bin's two figures are, by their keys: the top class's confidence and how
# often it is right, or (label sets) a label's probability and how often the photo has it
# (x key, y key, x label, y label)
RELIABILITY_AXES = {
    "confidence": ("confidence", "accuracy", "confidence", "accuracy"),
    "probability": ("probability", "frequency", "probability of a label", "share of photos with the label"),
}


def reliability_diagram(bins: list[dict[str, float]], ece: float, path: Path) -> None:
    """Accuracy against confidence per bin (dots sized by photos), or for label sets each
    label's share of photos against its probability; the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    x, y, xlabel, ylabel = RELIABILITY_AXES["probability" if bins and "probability" in bins[0] else "confidence"]
    if bins:
        total = sum(b["count"] for b in bins)
        ax.scatter(
            [b[x] for b in bins],
            [b[y] for b in bins],
            s=[20 + 400 * b["count"] / total for b in bins],
            alpha=0.7,
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"test calibration (ECE {ece:.3f})")
    ax.grid(alpha=0.3)
    _save(fig, path)


PR_CURVES_SHOWN = 48  # labels, the most frequent: past that the small multiples become unreadable


def precision_recall_curves(
    curves: dict[str, dict[str, list[float]]], per_label: dict[str, dict[str, Any]], photos: int, path: Path
) -> None:
    """Small multiples, one a label: its precision against recall on the test photos, the point
    of its saved threshold marked, and the share of photos with the label (a model that guesses)."""
    plt = _pyplot()
    names = sorted(curves, key=lambda n: -per_label[n]["support"])[:PR_CURVES_SHOWN]
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.5 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        label = per_label[name]
        ax.plot(curves[name]["recall"], curves[name]["precision"], "-", lw=1.2, drawstyle="steps-post")
        ax.axhline(label["support"] / max(photos, 1), color="grey", linestyle=":", lw=1)
        reached = label["tp"] + label["fp"] > 0  # else no test photo reaches the threshold: no point on the curve
        if reached:
            ax.plot(label["recall"], label["precision"], "o", color="tab:red", ms=5)
        ax.set_title(
            f"{name}: AP {label['ap']:.2f}\nthreshold {label['threshold']:.2f}"
            + ("" if reached else " (none reach it)"),
            fontsize=8,
        )
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision", fontsize=9)
    shown = f", the {len(names)} most frequent of {len(curves)}" if len(names) < len(curves) else ""
    fig.suptitle(f"precision-recall per label (test{shown}); red: the saved threshold", fontsize=10)
    _save(fig, path)


def outlier_histogram(scores: dict[str, Sequence[float]], threshold: float, path: Path) -> None:
    """Histograms of the outlier score for each group of photos, and the threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = [np.asarray(v, dtype=float) for v in scores.values() if len(v)]
    bins = np.linspace(min(float(v.min()) for v in values), max(float(v.max()) for v in values), 40) if values else 10
    for name, v in scores.items():
        if len(v):
            ax.hist(np.asarray(v, dtype=float), bins=bins, alpha=0.55, density=True, label=f"{name} ({len(v)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine distance to the nearest training photo")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    _save(fig, path)
