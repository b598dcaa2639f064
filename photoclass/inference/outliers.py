"""The "none of these" score: how far a photo is from every training photo, in the classifier's features.

The score is the cosine distance from a photo's features (what the classifier reads: the
backbone's pooled features, before the `-ms` models standardize them; the penultimate layer
of a CNN trained from scratch) to its nearest training photo. A photo scoring above the
threshold, which accepts a chosen share (97.5%) of the reference photos, is `unknown`. The
reference photos are the validation photos and, where the features were not trained (a
frozen backbone), every training photo scored against the others outside its duplicate
group: a 2.5% tail cannot be read off a validation split of a few dozen photos.
Fitted at training from the training and validation photos alone; saved as
RUN/outliers.safetensors (the training photos' unit-length features, and their rows in
split.csv) and model.json's "outliers" (k, threshold, accept).

benchmarks/outsiders.py chose this against max-probability, energy, Mahalanobis and other k
(benchmarks/README.md): on standardized features the distances drown in the many dimensions
that barely vary (AUROC 0.79 for the weather classifier), and beyond the first neighbour,
or below 97.5%, one of the two reference sets misses its target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

K = 1  # the nearest training photo (k = 2 to 20 measured worse: benchmarks/README.md)
MAX_BANK = 20_000  # training photos kept for the search; more are sampled (seeded)
MIN_ACCEPT = 0.90  # outsiders may lower the threshold until it accepts this share of the known photos


class OutlierScore(nn.Module):
    """(B, F) features -> (B,) cosine distance to the k-th nearest of the bank's rows."""

    def __init__(self, bank: torch.Tensor, k: int = K):
        super().__init__()
        self.register_buffer("bank", F.normalize(bank.float(), dim=1))
        self.k = min(k, len(bank))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        similarity = F.normalize(features.float(), dim=1) @ self.bank.T
        if self.k == 1:  # a max, not a sort: every runtime has it (LiteRT has no sort)
            return 1 - similarity.amax(dim=1)
        return 1 - similarity.topk(self.k, dim=1).values[:, -1]

    def scores(self, features: torch.Tensor, *, groups: torch.Tensor | None = None, chunk: int = 2048) -> torch.Tensor:
        """forward's scores, a chunk of photos at a time: 15,000 photos against a bank of
        20,000 would otherwise hold a 1.2 GB similarity matrix. With `groups` (one duplicate
        group per bank row), `features` are the bank's own rows, and each photo is scored
        against the photos outside its group, as a test photo is (the split keeps groups whole)."""
        if groups is not None and len(features) != len(self.bank):
            raise ValueError(f"groups: {len(features)} photos are not the bank's {len(self.bank)} rows")
        out = torch.empty(len(features))
        for start in range(0, len(features), chunk):
            similarity = F.normalize(features[start : start + chunk].float(), dim=1) @ self.bank.T
            if groups is not None:  # (chunk, bank): a photo's own group is out of reach
                similarity[groups[start : start + chunk, None] == groups[None, :]] = -2.0
            out[start : start + chunk] = 1 - similarity.topk(min(self.k, len(self.bank)), dim=1).values[:, -1]
        return out

    def nearest(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, bank rows) of the k nearest, nearest first."""
        similarity = F.normalize(features.float(), dim=1) @ self.bank.T
        found = similarity.topk(min(k, len(self.bank)), dim=1)
        return 1 - found.values, found.indices


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear layer whose inputs could be compared")
    return linears[-1]


def tap_point(model: nn.Module) -> nn.Module:
    """The module whose input is compared: the standardization of an `-ms` head, else the last
    linear layer."""
    from ..models.layers import Standardize

    standardize = [m for m in model.modules() if isinstance(m, Standardize)]
    return standardize[-1] if standardize else last_linear(model)


@contextlib.contextmanager
def tapped(model: nn.Module):
    """Collects the inputs of `tap_point(model)` while the block runs: a list that gains one
    (B, F) tensor per forward pass."""
    seen: list[torch.Tensor] = []
    hook = tap_point(model).register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        yield seen
    finally:
        hook.remove()


def features_of(
    model: nn.Module, batches: Iterable, rows: int | None = None, keep: np.ndarray | None = None
) -> torch.Tensor:
    """`tap_point`'s inputs for every batch of (x, y), in order, on the CPU. Given the number of
    `rows`, they are written into one tensor as they come, not gathered and then joined; with
    `keep` (sorted row positions, e.g. `bank_rows`), only those rows are kept."""
    was_training = model.training
    model.eval()
    out, filled, passed = None, 0, 0
    try:
        with torch.no_grad(), tapped(model) as seen:
            for x, _ in batches:
                model(x)
                if rows is not None:
                    found = seen.pop().float()
                    if keep is not None:  # the kept rows that fall in this batch
                        start, passed = passed, passed + len(found)
                        lo, hi = np.searchsorted(keep, [start, passed])
                        found = found[torch.as_tensor(keep[lo:hi] - start, device=found.device)]
                    if out is None:
                        out = torch.empty((rows if keep is None else len(keep), *found.shape[1:]), dtype=torch.float32)
                    out[filled : filled + len(found)] = found.cpu()
                    filled += len(found)
    finally:
        model.train(was_training)
    if rows is not None:
        return out[:filled] if out is not None else torch.zeros(0, 0)
    return torch.cat([s.float().cpu() for s in seen]) if seen else torch.zeros(0, 0)


def fit(
    train: torch.Tensor,
    val: torch.Tensor,
    *,
    accept: float = 0.975,
    k: int = K,
    rows: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[OutlierScore, dict]:
    """The score over `train` features, and {k, threshold, accept, photos, validated_on} with the
    threshold accepting `accept` of the `val` photos and, given each training photo's duplicate
    `groups` (pass them only for features that were not trained on those photos: trained ones
    sit closer together than new photos do), of the training photos, each left out with its
    group. `rows`: each training feature's photo, kept."""
    rows = np.arange(len(train)) if rows is None else np.asarray(rows)
    if groups is None and not len(val):  # nothing else to go on: each photo left out alone
        groups = np.arange(len(train))
    if len(train) > MAX_BANK:
        keep = bank_rows(len(train), seed)
        train, rows = train[keep], rows[keep]
        groups = None if groups is None else np.asarray(groups)[keep]
    score = OutlierScore(train, k)
    reference = [score.scores(val)] if len(val) else []
    if groups is not None and len(train) > 1:
        left_out = score.scores(train, groups=torch.as_tensor(np.asarray(groups), dtype=torch.int64))
        reference.append(left_out[left_out <= 2])  # a photo whose group is the whole bank has no score
    values = torch.cat(reference) if reference else torch.zeros(0)
    threshold = float(torch.quantile(values.double(), accept)) if len(values) else float("inf")
    score.rows = torch.as_tensor(rows, dtype=torch.int64)
    score.reference = values  # the known photos' scores the threshold was read from
    read = [*(["validation"] if len(val) else []), *(["training"] if groups is not None else [])]
    return score, {
        "score": "knn_cosine",
        "k": score.k,
        "threshold": threshold,
        "accept": accept,
        "photos": len(train),
        "validated_on": int(len(values)),
        "reference": f"{' and '.join(read)} photos"
        + (", each training photo left out with its duplicate group" if groups is not None else ""),
    }


def sharpen(known: torch.Tensor, outsiders: torch.Tensor, threshold: float, *, floor: float = MIN_ACCEPT) -> dict:
    """The threshold lowered by photos known to be of no class: the cut, between accepting
    `floor` of the `known` scores and `threshold`, that best tells the two apart (most
    outsiders flagged less known photos flagged; the highest such cut). Outsiders only ever
    lower it: a cut raised to just below the given outsiders would let nearer new kinds pass."""
    known, outsiders = known.double(), outsiders.double()
    lowest = float(torch.quantile(known, floor)) if len(known) else threshold
    cuts = torch.cat([known, outsiders, torch.tensor([threshold], dtype=torch.float64)])
    cuts = torch.unique(cuts[(cuts >= lowest) & (cuts <= threshold)])
    flagged = (outsiders[None, :] > cuts[:, None]).double().mean(1)
    alarms = (known[None, :] > cuts[:, None]).double().mean(1) if len(known) else torch.zeros_like(flagged)
    gain = flagged - alarms
    best = int(torch.nonzero(gain == gain.max()).max())  # ties: the highest cut, the fewest false alarms
    cut = float(cuts[best])
    return {
        "threshold": cut,
        "before": threshold,
        "outsiders": len(outsiders),
        "outsiders_flagged": int((outsiders > cut).sum()),
        "outsiders_flagged_before": int((outsiders > threshold).sum()),
        "known_accepted": float((known <= cut).double().mean()) if len(known) else 1.0,
    }


def bank_rows(n: int, seed: int = 0) -> np.ndarray:
    """The positions, of `n` training photos, that `fit` keeps in the bank (all up to MAX_BANK)."""
    if n <= MAX_BANK:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_BANK, replace=False))


def save(score: OutlierScore, path) -> None:
    from ..core.atomic import write_bytes_atomic
    from safetensors.torch import save

    write_bytes_atomic(path, save({"bank": score.bank.contiguous(), "rows": score.rows.contiguous()}))


def load(path, k: int) -> OutlierScore:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    score = OutlierScore(tensors["bank"], k)
    score.rows = tensors["rows"]
    return score
