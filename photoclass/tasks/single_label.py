"""One class per photo: softmax over the classes, cross-entropy, the most probable class wins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Array, Task, register_task

if TYPE_CHECKING:  # torch is imported where it is used: predicting from an export needs none
    import torch
    from torch import nn


class SingleLabel(Task):
    name = "single-label"
    headline = "accuracy"

    def loss_fn(self, *, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        from torch import nn

        return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        import torch.nn.functional as F

        return float(F.cross_entropy(logits, labels))

    def correct(self, logits: Array, labels: Array) -> Array:
        return logits.argmax(1) == labels

    def headline_figure(self, logits: np.ndarray, labels: np.ndarray) -> float:
        return float(self.correct(logits, labels).mean())

    def activate(self, logits: Array) -> Array:
        if not isinstance(logits, np.ndarray):
            return logits.softmax(1)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def decide(self, scores: Array) -> Array:
        return scores.argmax(1)

    def named(self, label: Any, classes: list[str]) -> str:
        return classes[int(label)]

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def relabeled(self, labels: np.ndarray, classes: list[str], onto: list[str]) -> np.ndarray:
        return np.array([onto.index(classes[i]) for i in labels])

    def class_weights(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        import torch

        counts = torch.bincount(labels, minlength=num_classes).float()
        return counts.sum() / (len(counts) * counts.clamp(min=1))

    def ranked(self, probabilities: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
        best = np.argsort(-probabilities, kind="stable")[:k]
        return [(classes[i], float(probabilities[i])) for i in best]

    def filed_under(self, prediction) -> list[str]:
        return [prediction.label]

    def average_flipped(self, logits: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        return ((logits.softmax(1) + flipped.softmax(1)) / 2).log()

    def summary(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        if not len(labels):
            return {"count": 0, "loss": float("nan"), "accuracy": float("nan")}
        return {
            "count": len(labels),
            "loss": self.loss(logits, labels),
            "accuracy": float(self.correct(logits, labels).float().mean()),
        }

    def metrics(
        self, logits: torch.Tensor, labels: torch.Tensor, classes: list[str], *, top_k: int, temperature: float
    ) -> dict[str, Any]:
        from ..evaluation.metrics import classification_report

        return classification_report(logits, labels, classes, top_k=top_k, temperature=temperature)

    def mistakes(self, logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, int, float]]:
        probabilities = logits.softmax(1)
        confidence, predicted = probabilities.max(1).values, probabilities.argmax(1)
        wrong = (predicted != labels).nonzero().flatten().tolist()
        wrong.sort(key=lambda i: -float(confidence[i]))
        return [(i, int(predicted[i]), float(confidence[i])) for i in wrong]

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        from ..evaluation.calibration import fit_temperature

        return fit_temperature(logits, labels)

    def label_issues(
        self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int, progress=False
    ) -> list:
        """Confident learning (cleanlab) on out-of-fold logistic-regression probabilities."""
        from ..evaluation.label_errors import out_of_fold_probabilities, rank_label_errors

        probabilities = out_of_fold_probabilities(features, labels, groups, folds=folds, seed=seed, progress=progress)
        return rank_label_errors(labels, probabilities)


SINGLE_LABEL = register_task(SingleLabel())
