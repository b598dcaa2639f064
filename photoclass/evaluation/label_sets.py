"""What the report shows of each label of a multi-label model: its 2x2 counts at the saved
threshold, its precision-recall curve, and how well its probabilities are calibrated.

Numpy only: `tasks.MultiLabel.metrics` calls it with probabilities and (N, L) truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CURVE_POINTS = 200  # at most, per label: enough for a small plot, small enough for test.json
CALIBRATION_BINS = 15  # as single-label's reliability diagram


def confusion_counts(decided: np.ndarray, positive: np.ndarray) -> dict[str, int]:
    """One label's true/false positives and negatives, from (N,) booleans."""
    return {
        "tp": int((decided & positive).sum()),
        "fp": int((decided & ~positive).sum()),
        "fn": int((~decided & positive).sum()),
        "tn": int((~decided & ~positive).sum()),
    }


def precision_recall_curve(probabilities: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """One label's (recall, precision) at each distinct score taken as the threshold, from the
    highest down; thinned to `CURVE_POINTS`. Empty without a positive photo."""
    if not positive.any():
        return {"recall": [], "precision": []}
    order = np.argsort(-probabilities, kind="stable")
    p, hits = probabilities[order], positive[order]
    tp = np.cumsum(hits)
    last = np.r_[p[1:] != p[:-1], True]  # photos of equal score are decided together
    recall = (tp / positive.sum())[last]
    precision = (tp / np.arange(1, len(p) + 1))[last]
    if len(recall) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(recall) - 1, CURVE_POINTS).round().astype(int))
        recall, precision = recall[keep], precision[keep]
    return {"recall": np.round(recall, 4).tolist(), "precision": np.round(precision, 4).tolist()}


def calibration_bins(probabilities: np.ndarray, positive: np.ndarray) -> list[dict[str, float]]:
    """Per equal-width bin of predicted probability (with pairs in it): the mean probability, the
    share of those photo-label pairs that are positive, and how many there are."""
    p, y = probabilities.ravel(), positive.ravel()
    which = np.clip(np.ceil(p * CALIBRATION_BINS).astype(int) - 1, 0, CALIBRATION_BINS - 1)  # (low, high]
    rows = []
    for b in range(CALIBRATION_BINS):
        inside = which == b
        if inside.any():
            rows.append(
                {
                    "probability": round(float(p[inside].mean()), 6),
                    "frequency": round(float(y[inside].mean()), 6),
                    "count": int(inside.sum()),
                }
            )
    return rows


def calibration_error(probabilities: np.ndarray, positive: np.ndarray) -> float:
    """Mean |share positive - mean probability| over the bins, weighted by their pairs; NaN for none."""
    rows = calibration_bins(probabilities, positive)
    total = sum(r["count"] for r in rows)
    if not total:
        return float("nan")
    return round(sum(r["count"] * abs(r["frequency"] - r["probability"]) for r in rows) / total, 6)


def per_label_details(
    probabilities: np.ndarray, unscaled: np.ndarray, positive: np.ndarray, decided: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """For (N, L) `probabilities` (temperature applied; `unscaled` without it), truth and
    decisions: per label its counts and calibration error, its precision-recall curve, and the
    calibration pooled over every photo-label pair."""
    return {
        "per_label": {
            name: {
                **confusion_counts(decided[:, i], positive[:, i]),
                "ece": calibration_error(probabilities[:, i], positive[:, i]),
            }
            for i, name in enumerate(classes)
        },
        "pr_curves": {
            name: precision_recall_curve(probabilities[:, i], positive[:, i]) for i, name in enumerate(classes)
        },
        "ece": calibration_error(probabilities, positive),
        "ece_unscaled": calibration_error(unscaled, positive),
        "calibration_bins": calibration_bins(probabilities, positive),
    }
