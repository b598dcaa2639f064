"""The logistic-regression head: the same fit as scikit-learn's, its strength chosen by grouped CV."""

import numpy as np
import pytest
import torch
from torch import nn

from photoclass.training.probe import C_GRID, choose_c, fit_linear_probe, fit_logistic


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor((d.data - d.data.mean(0)) / (d.data.std(0) + 1e-6), dtype=torch.float64)
    return x, torch.tensor(d.target)


def test_the_fit_matches_scikit_learns_logistic_regression(digits):
    from sklearn.linear_model import LogisticRegression

    x, y = digits
    for c in (0.01, 1.0):
        w, b = fit_logistic(x, y, 10, c)
        ours = (x @ w.T + b).softmax(1).numpy()
        theirs = LogisticRegression(C=c, max_iter=2000, tol=1e-8).fit(x.numpy(), y.numpy()).predict_proba(x.numpy())
        assert np.abs(ours - theirs).max() < 0.02, c
        assert (ours.argmax(1) == theirs.argmax(1)).mean() > 0.99


def test_cross_validation_prefers_strong_regularization_when_the_labels_are_noise():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(200, 50)))
    y = torch.tensor(rng.integers(0, 3, 200))
    c, accuracy = choose_c(x, y, np.arange(200), 3, seed=0)
    assert len(accuracy) == len(C_GRID) and all(0 <= a <= 1 for a in accuracy)
    assert c == C_GRID[int(np.argmax(accuracy))]
    assert max(accuracy) < 0.5  # nothing to learn: out-of-fold accuracy stays near chance


def test_twins_share_a_fold_so_they_cannot_vouch_for_each_other(digits):
    x, y = digits[0][:500], digits[1][:500]
    twins = torch.cat([x, x])  # every photo twice: with twins across folds CV would reward memorizing
    labels = torch.cat([y, y])
    groups = np.concatenate([np.arange(len(y))] * 2)
    _, grouped = choose_c(twins, labels, groups, 10, seed=0)
    _, leaky = choose_c(twins, labels, np.arange(2 * len(y)), 10, seed=0)
    assert max(leaky) > max(grouped) + 0.01  # a twin in the training folds vouches for its copy


def test_the_probe_sets_the_last_linear_layer_of_the_head(digits):
    x, y = digits
    head = nn.Sequential(nn.Identity(), nn.Dropout(0.5), nn.Linear(64, 10))
    found = fit_linear_probe(head, x.float(), y, np.arange(len(y)), seed=0)
    assert found["C"] in C_GRID
    accuracy = float((head.eval()(x.float()).argmax(1) == y).float().mean())
    assert accuracy > 0.95
