"""Stratified, seeded train/val/test splits that keep each duplicate group in one split.

Labels are a (N,) vector of class indices (single-label: stratified per class) or a (N, L) 0/1
matrix (multi-label: iterative stratification over the groups).
"""

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
    A (N, L) label matrix is split by `iterative_parts`.
    """
    fractions = np.array([1.0 - val_size - test_size, val_size, test_size])
    if np.ndim(labels) == 2:
        parts = iterative_parts(labels, groups, fractions, seed)
    else:
        parts = _balanced_parts(labels, groups, lambda total: _targets(total, fractions), seed)
    return np.array(SPLITS, dtype=object)[parts].astype(str)


def grouped_folds(labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """(N,) fold numbers 0..folds-1, stratified by class (or by label, for a (N, L) matrix),
    each duplicate group in one fold."""
    if np.ndim(labels) == 2:
        return iterative_parts(labels, groups, np.full(folds, 1.0 / folds), seed)

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


def iterative_parts(labels: np.ndarray, groups: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """(N,) part numbers for a (N, L) 0/1 `labels` matrix: the iterative stratification of
    Sechidis, Tsoumakas & Vlahavas (2011) applied to duplicate groups, a group's label counts
    the sum of its photos'. (The `iterative-stratification` package splits photos one by one
    and cannot keep a group together, hence this.) The rarest label left goes first: its
    groups, largest first, each to the part furthest below its wanted count of that label."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    _, inverse, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    counts = np.zeros((len(sizes), labels.shape[1]), dtype=np.int64)  # (G, L) photos of each label
    np.add.at(counts, inverse, labels)
    fractions = np.asarray(fractions, dtype=float)
    state = _Wanted(fractions, counts, sizes)
    order = rng.permutation(len(sizes))  # a seeded order among equal groups
    order = order[np.argsort(-sizes[order], kind="stable")]
    left = np.ones(len(sizes), dtype=bool)
    while True:
        remaining = counts[left].sum(0)  # (L,) photos of each label not yet placed
        live = np.flatnonzero(remaining)
        if not len(live):
            break
        label = live[np.argmin(remaining[live])]
        for g in order[left[order] & (counts[order, label] > 0)]:
            state.place(g, state.part_for(label))
            left[g] = False
    for g in order[left[order]]:  # groups with no label: the part furthest below its photo count
        state.place(g, state.part_for(None))
    return state.part_of[inverse]


class _Wanted:
    """What each part still wants, by label and in photos, as groups are placed."""

    def __init__(self, fractions: np.ndarray, counts: np.ndarray, sizes: np.ndarray):
        self.counts, self.sizes = counts, sizes
        self.open = fractions > 0  # (P,)
        self.labels = np.outer(fractions, counts.sum(0))  # (P, L) photos of each label wanted
        self.photos = fractions * sizes.sum()  # (P,)
        self.seen = np.zeros(self.labels.shape, dtype=bool)  # (P, L) the part holds the label
        self.reaches_all = (counts > 0).sum(0) >= self.open.sum()  # (L,) groups enough for every part
        self.part_of = np.full(len(sizes), -1, dtype=np.int64)

    def part_for(self, label: int | None) -> int:
        """The part furthest below its wanted count of `label` (first one that lacks the label
        while the label has groups for every part), then of photos, then the first."""
        candidates = self.open.copy()
        if label is not None:
            lacking = self.open & ~self.seen[:, label]
            if self.reaches_all[label] and lacking.any():
                candidates = lacking
            want = np.where(candidates, self.labels[:, label], -np.inf)
            candidates &= want >= want.max() - 1e-9
        return int(np.argmax(np.where(candidates, self.photos, -np.inf)))

    def place(self, group: int, part: int) -> None:
        self.part_of[group] = part
        self.labels[part] -= self.counts[group]
        self.photos[part] -= self.sizes[group]
        self.seen[part] |= self.counts[group] > 0


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
