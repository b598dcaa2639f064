"""Likely mislabeled photos: confident learning (cleanlab) on out-of-fold probabilities.

Each photo's probabilities come from a linear classifier that never saw it, nor any of its
near-duplicates (grouped folds: twins must not vouch for each other), fitted on frozen
pretrained features. cleanlab then ranks the photos whose given label its model doubts most.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.progress import progress_bar
from ..core.errors import PhotoclassError


@dataclass
class Suspect:
    index: int  # position among the dataset's usable photos
    given: Any  # the label given: a class index, or a row of a label matrix
    suggested: Any  # what the out-of-fold model says instead, in the same form
    score: float  # cleanlab's label quality, 0 (surely wrong) to 1 (surely right)
    flagged: bool  # among cleanlab's label issues, not only low in the ranking


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    progress: bool | None = False,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """(N, C) probabilities, each from a logistic regression fitted on the other folds; for a
    (N, L) label matrix, one binary regression a label, the folds stratified by `strata` (one
    class a photo, e.g. its rarest label).

    Folds are stratified by label and keep duplicate groups whole. Features are centred and
    scaled with the training folds' statistics. `progress=None` shows a bar only on a terminal."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    several = labels.ndim == 2
    if several:
        folds, width = max(2, min(folds, int(np.bincount(strata).max()))), labels.shape[1]
    else:
        strata, width = labels, int(labels.max()) + 1
        smallest = int(np.bincount(labels, minlength=width).min())
        folds = min(folds, smallest)
        if folds < 2:
            raise PhotoclassError(
                f"Finding label errors needs at least 2 photos of every class; one class has "
                f"{smallest}. HINT: add photos to it."
            )
    probabilities = np.zeros((len(labels), width))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held_out in progress_bar(
        splitter.split(features, strata, groups), total=folds, desc="folds", unit="fold", progress=progress
    ):
        if several:
            probabilities[held_out] = _per_label(features[train], labels[train], features[held_out])
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(features[train], labels[train])
        probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return probabilities


def _per_label(train: np.ndarray, labels: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """(M, L) probabilities of the `held_out` features, a logistic regression a label fitted on `train`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    x, held_x = scaler.transform(train), scaler.transform(held_out)
    found = np.zeros((len(held_out), labels.shape[1]))
    for k in range(labels.shape[1]):
        y = labels[:, k] > 0.5
        if y.all() or not y.any():  # one answer in these folds: it is the probability
            found[:, k] = float(y.all())
            continue
        found[:, k] = LogisticRegression(C=0.1, max_iter=2000).fit(x, y).predict_proba(held_x)[:, 1]
    return found


def rank_label_errors(labels: np.ndarray, probabilities: np.ndarray) -> list[Suspect]:
    """Every photo, most suspicious first (lowest self-confidence of its given label)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    scores = get_label_quality_scores(labels, probabilities, method="self_confidence")
    flagged = find_label_issues(labels, probabilities, filter_by="prune_by_noise_rate")
    order = np.argsort(scores, kind="stable")
    return [
        Suspect(int(i), int(labels[i]), int(probabilities[i].argmax()), round(float(scores[i]), 6), bool(flagged[i]))
        for i in order
    ]


def outlier_scores(features: np.ndarray) -> np.ndarray:
    """An outlier score per photo from its features, 0 to 1: higher is farther from the rest, as
    predict's `outlier_score` (one minus cleanlab's out-of-distribution score, where low is unusual)."""
    from cleanlab.outlier import OutOfDistribution

    with contextlib.redirect_stdout(io.StringIO()):  # it announces its fitting on stdout
        return 1.0 - OutOfDistribution().fit_score(features=features.astype(np.float32))
