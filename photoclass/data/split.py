"""Stratified, seeded train/val/test splits that keep each duplicate group in one split."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def grouped_split(
    labels: np.ndarray, groups: np.ndarray, *, val_size: float, test_size: float, seed: int
) -> np.ndarray:
    """Return a (N,) array of split names.

    Each group goes whole to one split. Per class (a group's class is its most common
    label), groups are taken largest first, in a seeded random order among equals, and each
    goes to the split furthest below its target count, so the class proportions hold.
    """
    fractions = np.array([1.0 - val_size - test_size, val_size, test_size])
    parts = _balanced_parts(labels, groups, lambda total: _targets(total, fractions), seed)
    return np.array(SPLITS, dtype=object)[parts].astype(str)


def grouped_folds(labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """(N,) fold numbers 0..folds-1, stratified by class, each duplicate group in one fold."""

    def equal(total: int) -> np.ndarray:
        return np.full(folds, total / folds)

    return _balanced_parts(labels, groups, equal, seed)


def _balanced_parts(labels: np.ndarray, groups: np.ndarray, targets, seed: int) -> np.ndarray:
    """Per class (a group's class is its most common label), groups are taken largest first,
    in a seeded random order among equals, and each goes to the part furthest below its
    target count (`targets(total)` per part), so the class proportions hold."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), dtype=np.int64)

    _, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    group_class = np.array([labels[m[0]] if len(m) == 1 else _most_common(labels[m]) for m in members])

    for cls in np.unique(group_class):
        class_groups = np.flatnonzero(group_class == cls)
        class_groups = class_groups[rng.permutation(len(class_groups))]
        class_groups = class_groups[np.argsort(-sizes[class_groups], kind="stable")]
        total = sizes[class_groups].sum()
        target = targets(total)
        filled = np.zeros(len(target))
        for g in class_groups:
            s = int(np.argmax(target - filled))
            filled[s] += sizes[g]
            out[members[g]] = s
    return out


def naive_split(labels: np.ndarray, *, val_size: float, test_size: float, seed: int) -> np.ndarray:
    """A plain stratified split that ignores duplicates, as most tools do."""
    return grouped_split(labels, np.arange(len(labels)), val_size=val_size, test_size=test_size, seed=seed)


def _most_common(values: np.ndarray):
    uniques, counts = np.unique(values, return_counts=True)
    return uniques[np.argmax(counts)]


def _targets(total: int, fractions: np.ndarray) -> np.ndarray:
    val = round(total * fractions[1])
    test = round(total * fractions[2])
    return np.array([total - val - test, val, test], dtype=float)


def leaked_test_photos(splits: np.ndarray, groups: np.ndarray) -> int:
    """How many test photos have a member of their duplicate group in train."""
    splits = np.asarray(splits)
    groups = np.asarray(groups)
    train_groups = set(groups[splits == "train"].tolist())
    return int(sum(g in train_groups for g in groups[splits == "test"].tolist()))
