"""Classification metrics from logits: loss, accuracy, top-k, per-class P/R/F1, confusion."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def classification_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str],
                          *, top_k: int = 2, temperature: float = 1.0) -> dict[str, Any]:
    """Everything `test.json` holds for one split. `logits` is (N, C), `labels` is (N,).

    Accuracy comes with its 95% Wilson interval; `ece` is the expected calibration error of
    the probabilities the model delivers (logits / `temperature`), `ece_unscaled` of the raw
    softmax. The loss is the raw model's."""
    n, num_classes = logits.shape
    loss = float(F.cross_entropy(logits, labels)) if n else float("nan")
    predicted = logits.argmax(dim=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows: true, cols: predicted
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    k = min(top_k, num_classes)
    in_top_k = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        support = int(confusion[i].sum())
        predicted_as = int(confusion[:, i].sum())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    accuracy = float(np.trace(confusion) / n) if n else float("nan")
    return {
        "count": int(n),
        "loss": loss,
        "accuracy": accuracy,
        "accuracy_interval": list(wilson_interval(int(np.trace(confusion)), int(n))),
        "ece": expected_calibration_error((logits / temperature).softmax(1), labels),
        "ece_unscaled": expected_calibration_error(logits.softmax(1), labels),
        "calibration_bins": calibration_bins((logits / temperature).softmax(1), labels),
        "error": 1.0 - accuracy,
        f"top{k}_accuracy": float(in_top_k.float().mean()) if n else float("nan"),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "classes": classes,
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (nan, nan) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest near 100%,
    where small test sets put most classifiers."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return round((centre - half) / denominator, 6), round((centre + half) / denominator, 6)


def calibration_bins(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> list[dict[str, float]]:
    """Per equal-width confidence bin with photos: its mean confidence, accuracy and count."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            rows.append({"confidence": round(float(confidence[inside].mean()), 6),
                         "accuracy": round(float(correct[inside].mean()), 6), "count": int(inside.sum())})
    return rows


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by their photos."""
    if not len(labels):
        return float("nan")
    rows = calibration_bins(probabilities, labels, bins)
    return round(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(labels), 6)


# two-sided 95% quantiles of Student's t, by degrees of freedom (beyond 30: within 2% of 2.0)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_interval(values) -> dict[str, Any]:
    """Mean, standard deviation and the 95% t-interval of the mean, for figures of repeated runs."""
    values = np.asarray(list(values), dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    sd = float(values.std(ddof=1)) if n > 1 else float("nan")
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": round(mean, 6), "sd": round(sd, 6), "interval": [round(mean - half, 6), round(mean + half, 6)],
            "n": n, "values": [round(float(v), 6) for v in values]}


def mcnemar_p(only_first_right: int, only_second_right: int) -> float:
    """Two-sided exact McNemar p-value: are two classifiers' errors on the same photos different?

    Only the photos where they disagree count; under "no difference" each such photo is a
    fair coin."""
    n = only_first_right + only_second_right
    if n == 0:
        return 1.0
    k = min(only_first_right, only_second_right)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
