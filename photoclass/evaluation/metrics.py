"""Classification metrics from logits: loss, accuracy, top-k, per-class P/R/F1, confusion."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def classification_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str],
                          *, top_k: int = 2) -> dict[str, Any]:
    """Everything `test.json` holds for one split. `logits` is (N, C), `labels` is (N,)."""
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
        "error": 1.0 - accuracy,
        f"top{k}_accuracy": float(in_top_k.float().mean()) if n else float("nan"),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "classes": classes,
    }
