"""Several labels per photo: a sigmoid per label, binary cross-entropy (or the asymmetric loss), and
a threshold per label chosen on the validation split (best F1 by default; or the lowest that reaches a
precision, the highest that keeps a recall). The headline figure is mAP, the mean over labels of
average precision.

Labels are (N, L) 0/1 matrices; a photo with none is a negative for every label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import check_threshold_rule
from .base import Array, Task, register_task

if TYPE_CHECKING:
    import torch
    from torch import nn


def parse_rule(rule: str) -> tuple[str, float | None]:
    """`f1`, `precision=0.9` or `recall=0.9` as (kind, target)."""
    check_threshold_rule(rule)
    kind, _, target = rule.partition("=")
    return kind, float(target) if target else None


def best_threshold(probabilities: np.ndarray, positive: np.ndarray, rule: str = "f1") -> float:
    """The threshold of one label's `probabilities` (decide positive at or above it) that `rule`
    picks on photos whose truth is `positive`; 0.5 for a label without positives or negatives."""
    kind, target = parse_rule(rule)
    positive = positive.astype(bool)
    if positive.all() or not positive.any():
        return 0.5
    order = np.argsort(-probabilities, kind="stable")
    p, hits = probabilities[order], positive[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    last = np.r_[p[1:] != p[:-1], True]  # a threshold can only fall between distinct scores
    precision, recall = tp / (tp + fp), tp / positive.sum()
    if kind == "f1":
        score = np.where(last, 2 * precision * recall / np.maximum(precision + recall, 1e-12), -1)
        cut = int(np.argmax(score))
    elif kind == "precision":
        ok = np.flatnonzero(last & (precision >= target))
        cut = int(ok[-1]) if len(ok) else 0  # unreachable: only the most confident
    else:
        cut = int(np.flatnonzero(last & (recall >= target))[0])
    # halfway to the next lower score: validation's last positive is not where new photos stop
    below = p[cut + 1] if cut + 1 < len(p) else 0.0
    return float((p[cut] + below) / 2)


def shared_threshold(probabilities: np.ndarray, positive: np.ndarray) -> float:
    """The one threshold (0.01 to 0.99) with the best macro F1 over the labels that have positives."""
    grid = np.linspace(0.01, 0.99, 99)
    positive = positive.astype(bool)
    held = positive.any(0)
    if not held.any():
        return 0.5
    decided = probabilities[None, :, held] >= grid[:, None, None]  # (thresholds, photos, labels)
    tp = (decided & positive[None, :, held]).sum(1)
    f1 = 2 * tp / (decided.sum(1) + positive[:, held].sum(0))
    return float(grid[int(np.argmax(f1.mean(1)))])


def average_precision(probabilities: np.ndarray, positive: np.ndarray) -> float:
    """One label's average precision (the area under its precision-recall steps); NaN without positives."""
    positive = positive.astype(bool)
    if not positive.any():
        return float("nan")
    order = np.argsort(-probabilities, kind="stable")
    hits = positive[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / positive.sum())


class MultiLabel(Task):
    name = "multi-label"
    headline = "mAP"
    sets = True
    losses = ("auto", "bce", "asl")
    answer = "label set"
    accuracy = "exact match"  # every label right, at 0.5 while training (thresholds come after)
    regions_limit = 10_000  # photos: the regions model holds 424 KB of features a photo while its head fits

    def __init__(self, thresholds: list[float] | None = None, rule: str = "f1", loss: str = "bce"):
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.rule = rule
        self.loss_kind = "bce" if loss == "auto" else loss
        parse_rule(rule)

    def __repr__(self) -> str:
        found = None if self.thresholds is None else len(self.thresholds)
        return f"MultiLabel(rule={self.rule!r}, thresholds={found}, loss={self.loss_kind!r})"

    def default_model(self, photos: int) -> tuple[str | None, str]:
        if photos > self.regions_limit:
            return None, f"efficientnet-lite2-regions is the default up to {self.regions_limit:,} photos"
        return "efficientnet-lite2-regions", "each label's best place in the photo counts (benchmarks/README.md)"

    def loss_fn(self, *, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        """Binary cross-entropy, or the asymmetric loss; `class_weights` weigh each label's positives
        (its pos_weight)."""
        return _smoothed_loss(self.loss_kind, class_weights, label_smoothing)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        return float(self.loss_fn()(logits, labels))

    def activate(self, logits: Array) -> Array:
        if not isinstance(logits, np.ndarray):
            return logits.sigmoid()
        return 0.5 * (1 + np.tanh(logits / 2))  # the sigmoid, without overflow for large |logits|

    def _cut(self, like: Array):
        cut = np.full(like.shape[1], 0.5) if self.thresholds is None else self.thresholds
        if isinstance(like, np.ndarray):
            return cut
        import torch

        return torch.as_tensor(cut, dtype=like.dtype, device=like.device)

    def decide(self, scores: Array) -> Array:
        """(N, L) booleans: each label at or above its threshold. `scores` are probabilities."""
        return scores >= self._cut(scores)

    def correct(self, logits: Array, labels: Array) -> Array:
        """Whether a photo's whole label set is right (exact match)."""
        decided = self.decide(self.activate(logits))
        return (decided == (labels > 0.5)).all(1)

    def fold_score(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """mAP, weighted by the fold's photos: exact match over many labels is too rare to rank by."""
        return _mean_ap(self.activate(logits).numpy(), labels.numpy() > 0.5) * len(labels)

    def headline_figure(self, logits: np.ndarray, labels: np.ndarray) -> float:
        return _mean_ap(self.activate(logits), np.asarray(labels) > 0.5)

    def agreement(self, reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Whether the whole label set is the same."""
        return (self.decide(self.activate(reference)) == self.decide(self.activate(candidate))).all(1)

    def named(self, label: Any, classes: list[str]) -> str:
        return ";".join(classes[i] for i in np.flatnonzero(np.asarray(label) > 0.5)) or "(none)"

    def decided(self, probabilities: np.ndarray, classes: list[str]) -> list[str] | None:
        """Every label at or above its threshold, most probable first."""
        chosen = np.flatnonzero(self.decide(probabilities[None])[0])
        return [classes[i] for i in chosen[np.argsort(-probabilities[chosen], kind="stable")]]

    def scores(self, probabilities: np.ndarray, classes: list[str]) -> dict[str, float] | None:
        return {name: float(p) for name, p in zip(classes, probabilities)}

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """Each photo's rarest label (the number of labels for a photo with none), so folds keep
        the rare labels spread."""
        positive = np.asarray(labels) > 0.5
        rarest = np.where(positive, positive.sum(0)[None, :], np.iinfo(np.int64).max).argmin(1)
        return np.where(positive.any(1), rarest, positive.shape[1])

    def relabeled(self, labels: np.ndarray, classes: list[str], onto: list[str]) -> np.ndarray:
        found = np.zeros((len(labels), len(onto)), dtype=labels.dtype)
        found[:, [onto.index(c) for c in classes]] = labels
        return found

    def class_weights(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Each label's pos_weight: its negatives over its positives (1 for a label never seen)."""
        positives = labels.float().sum(0)
        return ((len(labels) - positives) / positives.clamp(min=1)).where(positives > 0, positives.new_ones(()))

    def ranked(self, probabilities: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
        best = np.argsort(-probabilities, kind="stable")[:k]
        return [(classes[i], float(probabilities[i])) for i in best]

    def filed_under(self, prediction) -> list[str]:
        return list(prediction.labels or [])

    def average_flipped(self, logits: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        return ((logits.sigmoid() + flipped.sigmoid()) / 2).logit(eps=1e-7)

    def summary(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        if not len(labels):
            return {"count": 0, "loss": float("nan"), "mAP": float("nan"), "accuracy": float("nan")}
        p, y = self.activate(logits).numpy(), labels.numpy()
        return {
            "count": len(labels),
            "loss": self.loss(logits, labels),
            "mAP": _mean_ap(p, y),
            "accuracy": float(self.correct(logits, labels).float().mean()),  # exact match
        }

    def metrics(
        self, logits: torch.Tensor, labels: torch.Tensor, classes: list[str], *, top_k: int, temperature: float
    ) -> dict[str, Any]:
        from ..evaluation.label_sets import per_label_details

        p, y = self.activate(logits / temperature).numpy(), labels.numpy() > 0.5
        decided = self.decide(p)
        details = per_label_details(p, self.activate(logits).numpy(), y, decided, classes)
        per_label = {}
        for i, name in enumerate(classes):
            tp = int((decided[:, i] & y[:, i]).sum())
            predicted, support = int(decided[:, i].sum()), int(y[:, i].sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            per_label[name] = {
                "ap": average_precision(p[:, i], y[:, i]),
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                "support": support,
                "threshold": float(self._cut(p)[i]),
                **details["per_label"][name],  # tp, fp, fn, tn at the threshold; ece
            }
        m_ap = _mean_ap(p, y)
        return {
            "count": len(labels),
            "loss": self.loss(logits, labels),
            "mAP": m_ap,
            "mAP_interval": _bootstrap_interval(p, y, _mean_ap),
            "error": 1.0 - m_ap,
            "accuracy": float((decided == y).all(1).mean()) if len(y) else float("nan"),  # exact match
            "macro_f1": float(np.mean([c["f1"] for c in per_label.values()])),
            "macro_f1_interval": _bootstrap_interval(decided, y, _macro_f1),
            **_set_figures(decided, y),
            "labels_per_photo": float(y.sum(1).mean()) if len(y) else float("nan"),
            "per_class": per_label,
            "classes": classes,
            "ece": details["ece"],  # pooled over every photo-label pair
            "ece_unscaled": details["ece_unscaled"],
            "calibration_bins": details["calibration_bins"],
            "pr_curves": details["pr_curves"],
        }

    def mistakes(self, logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, list[int], float]]:
        """(index, the labels decided, how far the surest wrong label is from its threshold), surest first."""
        p = self.activate(logits).numpy()
        decided, y = self.decide(p), labels.numpy() > 0.5
        wrong = np.flatnonzero((decided != y).any(1))
        margin = np.abs(p - self._cut(p)) * (decided != y)
        wrong = sorted(wrong.tolist(), key=lambda i: -float(margin[i].max()))
        return [(i, decided[i], float(margin[i].max())) for i in wrong]

    def difference(self, label: Any, predicted: Any, classes: list[str]) -> dict[str, list[str]]:
        """The labels a photo has but was not given ("missed") and those it was given but has not ("extra")."""
        truth, decided = np.asarray(label) > 0.5, np.asarray(predicted) > 0.5
        return {
            "missed": [classes[i] for i in np.flatnonzero(truth & ~decided)],
            "extra": [classes[i] for i in np.flatnonzero(decided & ~truth)],
        }

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """One temperature for every label, minimizing the validation photos' binary cross-entropy."""
        import torch.nn.functional as F

        from ..evaluation.calibration import fit_temperature

        return fit_temperature(logits, labels.float(), loss=F.binary_cross_entropy_with_logits)

    def fitted(self, logits: torch.Tensor, labels: torch.Tensor) -> MultiLabel:
        p, y = self.activate(logits).numpy(), labels.numpy() > 0.5
        found = np.array([best_threshold(p[:, i], y[:, i], self.rule) for i in range(p.shape[1])])
        if parse_rule(self.rule)[0] == "f1":
            # each label's best cut rests on a few dozen validation positives: halfway to the cut
            # best for all labels at once beat both, and 0.5, on the mosaics (benchmarks/README.md)
            found = (found + shared_threshold(p, y)) / 2
        # rounded as saved: the test figures are those of the model as it is loaded again
        return MultiLabel([round(float(t), 6) for t in found], self.rule, self.loss_kind)

    def state(self) -> dict[str, Any]:
        """The rule and thresholds; and the loss where it is not BCE, so that a run re-evaluated
        reports the loss it was trained with."""
        if self.thresholds is None:
            return {}
        asymmetric = {"loss": self.loss_kind} if self.loss_kind != "bce" else {}
        return {"rule": self.rule, "thresholds": [float(t) for t in self.thresholds], **asymmetric}

    def configured(self, state: dict[str, Any] | None) -> MultiLabel:
        if not state:
            return self
        return MultiLabel(state.get("thresholds"), state.get("rule", self.rule), state.get("loss", self.loss_kind))

    def label_issues(
        self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int, progress=False
    ) -> list:
        """Photos with a likely missing or extra label: cleanlab's multi-label confident learning on
        out-of-fold probabilities (a logistic regression per label, folds keeping duplicates whole)."""
        import contextlib
        import io

        from cleanlab.multilabel_classification import filter, rank

        from ..evaluation.label_errors import Suspect, out_of_fold_probabilities

        strata = self.strata(labels)
        probabilities = out_of_fold_probabilities(
            features, labels, groups, folds=folds, seed=seed, progress=progress, strata=strata
        )
        given = [np.flatnonzero(row).tolist() for row in labels]
        with contextlib.redirect_stdout(io.StringIO()):
            scores = rank.get_label_quality_scores(given, probabilities)
            flagged = filter.find_label_issues(given, probabilities)
        order = np.argsort(scores, kind="stable")
        suggested = probabilities >= 0.5
        return [Suspect(int(i), labels[i], suggested[i], round(float(scores[i]), 6), bool(flagged[i])) for i in order]


def _mean_ap(probabilities: np.ndarray, positive: np.ndarray) -> float:
    """mAP over the labels that have a positive photo."""
    found = [average_precision(probabilities[:, i], positive[:, i]) for i in range(positive.shape[1])]
    found = [a for a in found if a == a]
    return float(np.mean(found)) if found else float("nan")


def _set_figures(decided: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """micro F1 (over every photo-label pair), per-photo F1 (the mean of each photo's set F1; 1 for
    a photo with no label that is given none) and the Hamming loss (the share of wrong pairs)."""
    tp, fp, fn = (decided & positive).sum(), (decided & ~positive).sum(), (~decided & positive).sum()
    both = (decided & positive).sum(1)
    sizes = decided.sum(1) + positive.sum(1)
    per_photo = np.where(sizes > 0, 2 * both / np.maximum(sizes, 1), 1.0)
    return {
        "micro_f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0,
        "per_photo_f1": float(per_photo.mean()) if len(per_photo) else float("nan"),
        "hamming_loss": float((decided != positive).mean()) if decided.size else float("nan"),
    }


def _macro_f1(decided: np.ndarray, positive: np.ndarray) -> float:
    tp, fp, fn = (decided & positive).sum(0), (decided & ~positive).sum(0), (~decided & positive).sum(0)
    return float(np.mean(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)))


def _bootstrap_interval(scores: np.ndarray, positive: np.ndarray, figure, draws: int = 500) -> list[float] | None:
    """The 95% percentile interval of `figure(scores, positive)` over photos drawn with
    replacement (seeded: the same photos give the same interval); None for fewer than 2 photos."""
    if len(positive) < 2:
        return None
    rng = np.random.default_rng(0)
    found = [figure(scores[i], positive[i]) for i in rng.integers(0, len(positive), (draws, len(positive)))]
    found = [f for f in found if f == f]
    return [float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))] if found else None


# the asymmetric loss's defaults (Ben-Baruch et al. 2021, "Asymmetric Loss For Multi-Label
# Classification"): negatives' loss focused by p^4 and shifted by 0.05, positives' left as BCE's
ASL_GAMMA_NEG, ASL_GAMMA_POS, ASL_CLIP = 4.0, 0.0, 0.05


def asymmetric_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    *,
    gamma_neg: float = ASL_GAMMA_NEG,
    gamma_pos: float = ASL_GAMMA_POS,
    clip: float = ASL_CLIP,
) -> torch.Tensor:
    """(N, L) losses: -y (1-p)^gamma_pos log p - (1-y) p_m^gamma_neg log(1-p_m), p = sigmoid(logits),
    p_m = max(p - clip, 0): a negative at or below `clip` costs nothing. The focusing weights keep
    their gradient, as in the paper's analysis: L-BFGS needs the gradient of the loss it measures."""
    import torch
    import torch.nn.functional as F

    log_p = F.logsigmoid(logits)
    one_minus_p = torch.sigmoid(-logits)
    positive = one_minus_p.pow(gamma_pos) * log_p if gamma_pos else log_p
    if pos_weight is not None:
        positive = positive * pos_weight
    shifted = (one_minus_p + clip).clamp(max=1.0)  # 1 - p_m
    log_shifted = shifted.log() if clip > 0 else F.logsigmoid(-logits)
    negative = (1 - shifted).pow(gamma_neg) * log_shifted
    return -(target * positive + (1 - target) * negative)


def _smoothed_loss(kind: str, pos_weight, label_smoothing: float):
    from torch import nn  # here: the task is imported where torch is not (an export's predictor)

    class SmoothedLoss(nn.Module):
        """The mean binary cross-entropy (or asymmetric loss) on targets pulled `label_smoothing` / 2
        towards one half."""

        def __init__(self):
            super().__init__()
            self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

        def forward(self, logits, labels):
            target = labels.float() * (1 - label_smoothing) + label_smoothing / 2
            if kind == "asl":
                return asymmetric_loss(logits, target, pos_weight).mean()
            return self.bce(logits, target)

    return SmoothedLoss()


MULTI_LABEL = register_task(MultiLabel())
