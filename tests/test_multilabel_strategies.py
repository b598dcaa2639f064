"""Training options of multi-label runs: the asymmetric loss, every strategy, and --folds."""

import json
import math
import subprocess
import sys

import pytest
import torch

import photoclass
from conftest import make_flat
from photoclass.core.errors import PhotoclassError, UnusedOptionWarning
from photoclass.tasks import MULTI_LABEL
from photoclass.tasks.multi_label import asymmetric_loss
from test_multilabel_train import squares

pytestmark = [pytest.mark.trains]

SMALL = dict(image_size=32, epochs=1, finetune_epochs=1, threads=1, seed=0, unknown_accept=0.0, progress=False)


def test_the_asymmetric_loss_is_the_papers_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.0, -4.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])

    def negative(x):  # p shifted down by 0.05, focused by its 4th power
        shifted = max(1 / (1 + math.exp(-x)) - 0.05, 0.0)
        return -(shifted**4) * math.log(1 - shifted)

    want = [math.log(1 + math.exp(-2.0)), negative(-1.0), negative(0.0), 0.0]  # positive: BCE's (gamma_pos 0)
    assert want[1] == pytest.approx(5.676e-4, rel=1e-3) and want[3] == 0.0  # p = 0.018 < 0.05 costs nothing
    assert asymmetric_loss(logits, target)[0].tolist() == pytest.approx(want, abs=1e-7)
    asl = MULTI_LABEL.configured({"loss": "asl"})
    assert asl.loss(logits, target) == pytest.approx(sum(want) / 4)  # the mean, as BCE's
    weighted = asl.loss_fn(class_weights=torch.tensor([3.0, 1.0, 1.0, 1.0]))(logits, target)
    assert float(weighted) == pytest.approx((3 * want[0] + sum(want[1:])) / 4)  # pos_weight scales positives
    gamma_pos = asymmetric_loss(logits, target, gamma_pos=1.0)[0, 0]
    assert float(gamma_pos) == pytest.approx(want[0] / (1 + math.exp(2.0)))  # (1 - p) log p
    assert MULTI_LABEL.loss(logits, target) > asl.loss(logits, target)  # BCE stays the default


def test_the_one_solve_head_converges_with_the_asymmetric_loss():
    from photoclass.training.probe import fit_logistic

    torch.manual_seed(0)
    x = torch.randn(300, 16, dtype=torch.float64)
    y = (x[:, :3] + 0.5 * torch.randn(300, 3, dtype=torch.float64) > 0.8).double()
    asl = MULTI_LABEL.configured({"loss": "asl"})
    w, b = fit_logistic(x, y, 3, 1.0, task=asl)
    w, b = w.requires_grad_(), b.requires_grad_()
    objective = asl.loss_fn()(x @ w.T + b, y) + (w * w).sum() / (2 * 1.0 * len(x))
    objective.backward()
    assert w.grad.abs().max() < 1e-3 and b.grad.abs().max() < 1e-3  # a stationary point, though not convex
    more = fit_logistic(x, y, 3, 1.0, task=asl, init=(w.detach(), b.detach()), max_iter=500)
    assert torch.allclose(more[0], w.detach(), atol=1e-3)


def test_asl_is_refused_on_a_single_label_run(tmp_path):
    data = make_flat(tmp_path / "photos", per_class=4)
    with pytest.raises(PhotoclassError, match=r"`loss` asl is for multi-label runs; this run is single-label"):
        photoclass.train(data, out=tmp_path / "run", model="compact-cnn", loss="asl", verbose=False, **SMALL)
    assert not (tmp_path / "run").exists()
    run = subprocess.run(
        [sys.executable, "-m", "photoclass", "train", str(data), "--loss", "asl", "--task", "single-label"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith("photoclass: error: --loss asl is for multi-label runs") and "HINT" in run.stderr


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    base = tmp_path_factory.mktemp("strategies")
    data, _ = squares(base / "photos", photos=36)
    return base, data


@pytest.mark.parametrize(
    "strategy, options",
    [
        ("scratch", dict(model="compact-cnn", loss="asl", class_weights=True)),
        ("features", dict(model="efficientnet-lite0", loss="asl")),
        ("lpft", dict(model="efficientnet-lite0", label_smoothing=0.1)),
        ("finetune", dict(model="efficientnet-lite0", class_weights=True)),
    ],
)
def test_every_strategy_trains_a_multi_label_run(photos, strategy, options):
    base, data = photos
    out = base / f"run-{strategy}"
    result = photoclass.train(
        data, out=out, strategy=strategy, cache_dir=base / "cache", verbose=False, **SMALL, **options
    )
    meta = json.loads((out / "model.json").read_text())
    assert meta["task"] == "multi-label" and len(meta["decision"]["thresholds"]) == 3
    assert meta["decision"].get("loss", "bce") == options.get("loss", "bce")
    test = json.loads((out / "test.json").read_text())["test"]
    assert 0 <= test["mAP"] <= 1 and result.test["mAP"] == test["mAP"]
    assert json.loads((out / "config.json").read_text())["train"]["strategy"] == strategy


def test_class_weights_on_the_one_solve_head_is_a_note_and_asl_is_re_measured_alike(photos):
    from photoclass.workflows.evaluate import evaluate_run

    base, data = photos
    out = base / "weighted"
    with pytest.warns(UnusedOptionWarning, match=r"`class_weights` has no effect: the classifier is a logistic"):
        photoclass.train(
            data,
            out=out,
            model="efficientnet-lite0",
            strategy="features",
            loss="asl",
            class_weights=True,
            cache_dir=base / "cache",
            verbose=False,
            **SMALL,
        )
    first = json.loads((out / "test.json").read_text())["test"]
    again = evaluate_run(out, progress=False)["test"]  # through the whole network, not cached features
    assert again["loss"] == pytest.approx(first["loss"], rel=1e-4) and again["mAP"] == pytest.approx(first["mAP"])


def test_folds_on_multi_label_data_give_each_folds_map(photos, capsys):
    from photoclass.workflows.repeat import train_repeated

    base, data = photos
    out = base / "folds"
    summary = train_repeated(data, folds=3, out=out, model="compact-cnn", cache_dir=base / "cache", **SMALL)
    members = [json.loads((out / f"fold-{k}" / "test.json").read_text())["test"] for k in range(3)]
    assert summary["test_mAP"]["values"] == pytest.approx([m["mAP"] for m in members])
    assert summary["test_mAP"]["n"] == 3 and summary["test_mAP"]["sd"] >= 0
    assert sum(m["count"] for m in members) == 36  # each photo tested once
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.startswith("member"))
    assert header.split()[:3] == ["member", "test", "mAP"]
    assert any(line.startswith("test mAP: mean") for line in printed)


def test_the_lr_finder_measures_the_runs_own_loss(photos, tmp_path):
    base, data = photos
    first = {}
    for loss in ("bce", "asl"):
        finding = photoclass.lr_find(
            data,
            model="compact-cnn",
            loss=loss,
            steps=5,
            cache_dir=base / "cache",
            out=tmp_path / f"{loss}.png",
            **SMALL,
        )
        first[loss] = finding.losses[0]
    # the same first batch through the same network: ASL's positives cost as BCE's, its negatives far less
    assert first["asl"] < 0.8 * first["bce"]
