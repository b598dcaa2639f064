"""Which photo to label next, and the fast head refitted after each answer.

Both work on the frozen backbone's features of every photo of the pool (labelled or not).
While few photos are labelled (`cold_start`), the next one is TypiClust's: the pool is
clustered into one cluster more than there are labels, and the most typical photo (densest
neighbourhood) of the largest cluster without a label is chosen; this covers the data's modes
before any model can be trusted (Hacohen et al. 2022, "Active learning on a budget"). After
that, the photo with the smallest margin between the head's two top classes among a diverse,
typical candidate set: the pool is clustered into about three times as many clusters as there are
labels, and each cluster without a label offers its most typical photo. Diversity keeps the
picks from piling onto near-duplicates of one ambiguous photo, typicality keeps outliers from
being chosen for being odd (benchmarks/active_labelling.py and its README section measure the
order against random, and the variants tried).

The head is a logistic regression (training/probe.py's L-BFGS fit) on standardized features,
with a fixed strength: refitting it takes tens of milliseconds for a few hundred labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..evaluation.stats import wilson_interval
from ..tasks import SINGLE_LABEL
from .probe import fit_logistic

HEAD_C = 1.0  # probe.py's C: mean cross-entropy + ||W||^2 / (2 C N)
REDUCED_DIMS = 64  # principal components the clustering and typicality use
NEIGHBOURS = 20  # typicality: inverse mean distance to this many nearest photos
CV_FOLDS = 5
CV_LIMIT = 1000  # labelled photos the estimate is cross-validated on, at most
CV_ITERATIONS = 30  # each fold's fit starts from the head on every label: close in a few steps
RECLUSTER_GROWTH = 1.1  # the candidates' clusters are made again when their number grows by 10%
CANDIDATE_CLUSTERS = 3.0  # candidates per (labels + 1): one typical photo of each cluster


@dataclass
class Head:
    """A fitted logistic regression over standardized features."""

    weight: torch.Tensor  # (K, F) float64
    bias: torch.Tensor  # (K,)
    classes: list[int]  # the class ids its columns stand for (those with a label so far)

    def probabilities(self, x: torch.Tensor, num_classes: int) -> np.ndarray:
        """(N, num_classes): classes without a label yet get 0."""
        out = np.zeros((len(x), num_classes))
        if len(self.classes) == 1:
            out[:, self.classes[0]] = 1.0
        else:
            out[:, self.classes] = SINGLE_LABEL.activate(x @ self.weight.T + self.bias).numpy()
        return out


def fit_head(
    x: torch.Tensor, y: np.ndarray, *, c: float = HEAD_C, init: Head | None = None, max_iter: int = 100
) -> Head:
    """The logistic regression on the labelled rows `x` (standardized) with class ids `y`."""
    classes = sorted(set(int(v) for v in y))
    if len(classes) < 2:
        return Head(torch.zeros(1, x.shape[1], dtype=x.dtype), torch.zeros(1, dtype=x.dtype), classes)
    column = {k: i for i, k in enumerate(classes)}
    target = torch.as_tensor([column[int(v)] for v in y])
    start = (init.weight, init.bias) if init is not None and init.classes == classes else None
    w, b = fit_logistic(x, target, len(classes), c, init=start, max_iter=max_iter)
    return Head(w, b, classes)


def cv_accuracy(x: torch.Tensor, y: np.ndarray, *, seed: int = 0) -> dict:
    """Accuracy of the head on the labelled photos (CV_LIMIT of them at most), each predicted by
    a head fitted without its fold (stratified folds), with its 95% Wilson interval; None
    figures below 2 classes. Labels chosen as hard ones make it pessimistic."""
    y = np.asarray(y)
    if len(set(y.tolist())) < 2 or len(y) < 4:
        return {"accuracy": None, "interval": None, "photos": int(len(y))}
    rng = np.random.default_rng(seed)
    if len(y) > CV_LIMIT:  # the estimate on a share: its interval says so, and the page stays quick
        share = rng.choice(len(y), CV_LIMIT, replace=False)
        x, y = x[torch.from_numpy(share)], y[share]
    folds = min(CV_FOLDS, len(y))
    fold = np.empty(len(y), dtype=np.int64)
    order = rng.permutation(len(y))
    by_class = order[np.argsort(y[order], kind="stable")]
    fold[by_class] = np.arange(len(y)) % folds  # dealt out class by class: stratified
    whole = fit_head(x, y)
    correct = 0
    for k in range(folds):
        held = fold == k
        head = fit_head(x[~held], y[~held], init=whole, max_iter=CV_ITERATIONS)
        p = head.probabilities(x[held], int(y.max()) + 1)
        correct += int((SINGLE_LABEL.decide(p) == y[held]).sum())
    low, high = wilson_interval(correct, len(y))
    return {"accuracy": correct / len(y), "interval": [low, high], "photos": int(len(y))}


class Selector:
    """The order of labelling over one pool of features: `next` picks the photo to ask about."""

    def __init__(self, features: torch.Tensor, num_classes: int, *, seed: int = 0):
        x = features.double()
        std = x.std(0)
        self.x = (x - x.mean(0)) / torch.maximum(std, 0.1 * std.median().clamp(min=1e-12))  # (N, F)
        self.num_classes = num_classes
        self.seed = seed
        self.reduced = _principal_components(self.x, REDUCED_DIMS, seed)  # (N, D) float32
        self.typicality = _typicality(self.reduced, NEIGHBOURS)  # (N,)
        self.cold_start = max(2 * num_classes, 10)  # labels answered with TypiClust's picks
        self._clusters: tuple[int, np.ndarray] | None = None  # (k, each photo's cluster) of the candidates

    def fit(self, labelled: np.ndarray, labels: np.ndarray, init: Head | None = None) -> Head:
        return fit_head(self.x[labelled], labels, init=init)

    def next(self, labelled: np.ndarray, head: Head | None, *, skip: np.ndarray | None = None) -> int | None:
        """The position of the next photo to label (None when none is left): `labelled` and
        `skip` are positions not to ask about; `head` the head fitted on the labelled ones."""
        open_ = np.ones(len(self.x), dtype=bool)
        open_[np.asarray(labelled, dtype=np.int64)] = False
        if skip is not None:
            open_[np.asarray(skip, dtype=np.int64)] = False
        if not open_.any():
            return None
        if len(labelled) < self.cold_start or head is None or len(head.classes) < 2:
            return self._typical_uncovered(np.asarray(labelled, dtype=np.int64), open_)
        return self._least_margin(head, open_)

    def _typical_uncovered(self, labelled: np.ndarray, open_: np.ndarray) -> int:
        """TypiClust: the most typical open photo of the largest cluster without a labelled one."""
        k = min(len(labelled) + 1, int(open_.sum()) + len(labelled))
        cluster = _kmeans(self.reduced, k, self.seed)
        sizes = np.bincount(cluster, minlength=k).astype(float)
        sizes[np.unique(cluster[labelled])] = -1  # covered
        has_open = np.zeros(k, dtype=bool)
        has_open[cluster[open_]] = True
        sizes[~has_open] = -2
        chosen = int(np.argmax(sizes))
        members = np.flatnonzero((cluster == chosen) & open_)
        return int(members[np.argmax(self.typicality[members])])

    def _least_margin(self, head: Head, open_: np.ndarray) -> int:
        """The open photo whose top two classes are closest, among the most typical photo of
        each cluster without a label, of about CANDIDATE_CLUSTERS x (labels + 1) clusters."""
        wanted = CANDIDATE_CLUSTERS * (len(self.x) - open_.sum() + 1)
        k = min(int(RECLUSTER_GROWTH ** np.ceil(np.log(wanted) / np.log(RECLUSTER_GROWTH))), int(open_.sum()))
        if self._clusters is None or self._clusters[0] != k:
            self._clusters = (k, _kmeans(self.reduced, k, self.seed))
        cluster = self._clusters[1]
        candidates = []
        covered = set(cluster[~open_].tolist())  # clusters with a label (or a skip) already
        for c in range(k):
            members = np.flatnonzero((cluster == c) & open_)
            if len(members) and c not in covered:
                candidates.append(members[np.argmax(self.typicality[members])])
        if not candidates:
            return self._typical_uncovered(np.flatnonzero(~open_), open_)
        candidates = np.array(candidates)
        p = np.sort(head.probabilities(self.x[candidates], self.num_classes), axis=1)
        return int(candidates[np.argmin(p[:, -1] - p[:, -2])])


def _principal_components(x: torch.Tensor, dims: int, seed: int = 0) -> np.ndarray:
    """`x` (N, F) projected on its top `dims` principal components, float32."""
    dims = min(dims, *x.shape)
    with torch.random.fork_rng():  # its random start, seeded: the same order for the same seed
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(x.float() - x.float().mean(0), q=dims, niter=3)
    return (u * s).numpy()


def _kmeans(z: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Each row's cluster among `k` (k-means++ start, then Lloyd's steps); in torch, because
    scikit-learn's took seconds for a few hundred clusters on two busy cores."""
    x = torch.from_numpy(z).float()
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=generator)]
    nearest = torch.cdist(x, centres).squeeze(1) ** 2
    for _ in range(1, k):
        chosen = torch.multinomial(nearest + 1e-12, 1, generator=generator)
        centres = torch.cat([centres, x[chosen]])
        nearest = torch.minimum(nearest, ((x - x[chosen]) ** 2).sum(1))
    for _ in range(iterations):
        cluster = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, cluster, x)
        counts = torch.bincount(cluster, minlength=k).float()
        moved = sums / counts.clamp(min=1)[:, None]
        centres = torch.where(counts[:, None] > 0, moved, centres)  # an empty cluster keeps its centre
    return torch.cdist(x, centres).argmin(1).numpy()


def _typicality(z: np.ndarray, k: int) -> np.ndarray:
    """1 / mean Euclidean distance to the k nearest other rows of `z` (N, D), in blocks."""
    k = max(1, min(k, len(z) - 1))
    zt = torch.from_numpy(z)
    squared = (zt * zt).sum(1)
    out = np.empty(len(z))
    for start in range(0, len(z), 1024):
        block = zt[start : start + 1024]
        d = (squared[start : start + 1024, None] + squared[None] - 2 * block @ zt.T).clamp(min=0).sqrt()
        nearest = d.topk(k + 1, largest=False).values[:, 1:]  # without the row itself
        out[start : start + len(block)] = 1.0 / (nearest.mean(1).numpy() + 1e-12)
    return out
