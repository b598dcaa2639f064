"""The multi-label task's arithmetic: thresholds per label, average precision, its decision saved and restored."""

import numpy as np
import pytest
import torch

from photoclass.core.errors import PhotoclassError
from photoclass.tasks import MULTI_LABEL, MultiLabel, get_task, task_of
from photoclass.tasks.multi_label import average_precision, best_threshold, parse_rule, shared_threshold


def test_average_precision_is_scikit_learns():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(50) < 0.3
        p = np.clip(y * 0.3 + rng.random(50) * 0.7, 0, 1)
        if y.any():
            assert average_precision(p, y) == pytest.approx(average_precision_score(y, p))
    assert np.isnan(average_precision(np.ones(5), np.zeros(5)))


def test_the_threshold_rules_pick_what_they_say():
    p = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0], bool)
    # each cut halfway between the last score kept and the next one below
    assert best_threshold(p, y, "f1") == pytest.approx(0.35)  # 0.4: 4 of 4 found, 2 wrong, F1 0.8, the best
    assert best_threshold(p, y, "precision=1") == pytest.approx(0.85)  # 0.9: the lowest with no wrong one
    assert best_threshold(p, y, "recall=0.75") == pytest.approx(0.65)  # 0.7: the highest finding 3 of the 4
    assert best_threshold(p, np.zeros(8, bool)) == 0.5  # nothing to learn from
    for bad in ("f2", "precision", "recall=0", "precision=1.5", "f1=0.3"):
        with pytest.raises(PhotoclassError, match="threshold_rule"):
            parse_rule(bad)


def test_the_shared_threshold_is_the_best_single_cut_in_macro_f1():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y = rng.random((150, 5)) < [0.5, 0.3, 0.2, 0.1, 0.4]
    p = np.clip(y * rng.uniform(0.1, 0.5, 5) + rng.random((150, 5)) * 0.6, 0, 1)
    grid = np.linspace(0.01, 0.99, 99)
    scores = [f1_score(y, p >= t, average="macro", zero_division=0) for t in grid]
    assert shared_threshold(p, y) == pytest.approx(grid[int(np.argmax(scores))])
    assert shared_threshold(p, np.zeros_like(y)) == 0.5


def test_thresholds_fitted_on_validation_are_saved_and_restored():
    rng = np.random.default_rng(1)
    y = torch.from_numpy((rng.random((200, 4)) < [0.5, 0.2, 0.05, 0.3]).astype(np.float32))
    logits = (y * 2 - 1) * torch.tensor([3.0, 1.0, 0.5, 2.0]) + torch.from_numpy(rng.normal(size=(200, 4))).float()
    fitted = MULTI_LABEL.fitted(logits, y)
    state = fitted.state()
    assert state["rule"] == "f1" and len(state["thresholds"]) == 4 and MULTI_LABEL.state() == {}
    restored = task_of({"task": "multi-label", "decision": state})
    assert isinstance(restored, MultiLabel) and restored.state() == state
    p = restored.activate(logits.numpy())
    assert (restored.decide(p) == (p >= np.array(state["thresholds"]))).all()
    # by F1: each label's best cut, halfway to the one cut best for all
    p_fit, positive = torch.sigmoid(logits).numpy(), y.numpy() > 0.5
    shared = shared_threshold(p_fit, positive)
    own = [best_threshold(p_fit[:, i], positive[:, i]) for i in range(4)]
    assert state["thresholds"] == pytest.approx([(t + shared) / 2 for t in own], abs=1e-6)
    assert MULTI_LABEL.configured({"rule": "recall=0.9"}).fitted(logits, y).state()["thresholds"] == pytest.approx(
        [best_threshold(p_fit[:, i], positive[:, i], "recall=0.9") for i in range(4)], abs=1e-6
    )  # a precision or recall target keeps each label's own cut
    tuned = fitted.metrics(logits, y, list("abcd"), top_k=2, temperature=1.0)
    plain = MULTI_LABEL.metrics(logits, y, list("abcd"), top_k=2, temperature=1.0)
    assert tuned["macro_f1"] >= plain["macro_f1"] - 1e-12
    assert tuned["mAP"] == plain["mAP"]  # a ranking figure: thresholds do not move it
    assert tuned["error"] == pytest.approx(1 - tuned["mAP"])


def test_mean_average_precision_matches_scikit_learn_and_agreement_is_per_photo():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(2)
    y = (rng.random((60, 3)) < 0.4).astype(np.float32)
    logits = torch.from_numpy(rng.normal(size=(60, 3)) + y * 1.5).float()
    found = MULTI_LABEL.metrics(logits, torch.from_numpy(y), ["x", "y", "z"], top_k=2, temperature=1.0)
    assert found["mAP"] == pytest.approx(average_precision_score(y, logits.sigmoid().numpy(), average="macro"))
    from sklearn.metrics import f1_score, hamming_loss

    decided = logits.sigmoid().numpy() >= 0.5
    assert found["micro_f1"] == pytest.approx(f1_score(y, decided, average="micro"))
    assert found["per_photo_f1"] == pytest.approx(f1_score(y, decided, average="samples", zero_division=1.0))
    assert found["hamming_loss"] == pytest.approx(hamming_loss(y, decided))
    same = MULTI_LABEL.agreement(logits.numpy(), logits.numpy() + 0.01)
    assert same.shape == (60,) and same.mean() > 0.9


def test_the_task_trains_a_linear_head_with_its_loss():
    torch.manual_seed(0)
    x = torch.randn(300, 8)
    y = (x[:, :3] > 0.3).float()  # three labels, each read off one feature
    head = torch.nn.Linear(8, 3)
    loss_fn = get_task("multi-label").loss_fn(class_weights=torch.ones(3))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        loss_fn(head(x), y).backward()
        optimizer.step()
    summary = MULTI_LABEL.summary(head(x).detach(), y)
    assert summary["mAP"] > 0.95 and summary["accuracy"] > 0.8


def test_the_one_solve_head_fits_several_labels_with_grouped_folds():
    from photoclass.training.probe import fit_linear_probe

    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(240, 16))).float()
    y = torch.stack([x[:, 0] > 0.2, x[:, 1] > 0.8, (x[:, 2] + x[:, 3]) > 0], 1).long()
    head = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(16, 3))
    found = fit_linear_probe(head, x, y, np.arange(240) // 2, seed=0, task=MULTI_LABEL)
    assert found["C"] > 0.01  # the labels are learnable: cross-validation keeps the fit loose
    with torch.no_grad():
        assert MULTI_LABEL.summary(head(x), y)["mAP"] > 0.95
    strata = MULTI_LABEL.strata(y.numpy())
    assert set(strata) <= {0, 1, 2, 3} and (strata[y.numpy().sum(1) == 0] == 3).all()


def test_the_threshold_rule_is_an_option_of_training_checked_at_once():
    from photoclass.config import TrainConfig

    assert TrainConfig(threshold_rule="precision=0.9").threshold_rule == "precision=0.9"
    for bad in ("f2", "recall=0", "precision=2", "recall=x"):
        with pytest.raises(PhotoclassError, match="threshold_rule"):
            TrainConfig(threshold_rule=bad)
    assert (
        MULTI_LABEL.configured({"rule": "recall=0.8"})
        .fitted(torch.tensor([[2.0], [1.0], [-1.0], [-2.0]]), torch.tensor([[1.0], [1.0], [0.0], [1.0]]))
        .state()["rule"]
        == "recall=0.8"
    )
