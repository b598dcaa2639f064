"""Intervals and calibrated confidences: Wilson intervals, ECE, temperature scaling end to end."""

import json
import shutil

import numpy as np
import pytest
import torch

import photoclass
from photoclass.evaluation.calibration import fit_temperature
from photoclass.evaluation.metrics import expected_calibration_error
from photoclass.evaluation.stats import t_interval, wilson_interval
from photoclass.inference.predictor import Predictor

from conftest import make_flat


def test_wilson_interval_matches_the_formula_and_stays_inside_zero_and_one():
    low, high = wilson_interval(14, 16)
    assert low == pytest.approx(0.6398, abs=1e-4) and high == pytest.approx(0.9650, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert wilson_interval(162, 168)[0] < 162 / 168 < wilson_interval(162, 168)[1]


@pytest.mark.parametrize("n", [2, 3, 10, 31, 32, 40, 100])
def test_the_t_interval_uses_students_quantile_for_any_number_of_runs(n):
    stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(n).normal(0.5, 0.02, n)  # far from the bounds at 0 and 1
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    low, high = t_interval(values)["interval"]
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=2e-6)
    assert (high - low) / 2 == pytest.approx(half, rel=1e-3)  # the table holds three decimals
    assert t_interval([0.9345, 0.9762, 0.9643])["interval"][1] == 1.0  # an accuracy's interval stops at 1


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = torch.tensor([0] * 8 + [1] * 2)
    calibrated = torch.tensor([[0.8, 0.2]] * 10)  # says 80%, right 8 times in 10
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0, abs=1e-6)
    overconfident = torch.tensor([[0.99, 0.01]] * 10)
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.19, abs=1e-5)


def test_temperature_scaling_recovers_a_known_temperature():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=generator) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    assert fit_temperature(true_logits * 3, labels) == pytest.approx(3.0, rel=0.1)  # over-confident by 3x
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.1)


def test_a_validation_split_without_errors_leaves_the_temperature_at_one():
    logits = torch.full((30, 3), -3.0)
    labels = torch.arange(30) % 3
    logits[torch.arange(30), labels] = 3.0  # every prediction right, margin 6
    assert fit_temperature(logits, labels) == 1.0  # the fit alone would sharpen towards 0
    labels[0] = (labels[0] + 1) % 3  # one error: the likelihood has a finite optimum again
    assert 0.05 < fit_temperature(logits, labels) < 20


@pytest.mark.trains
def test_a_run_saves_its_temperature_and_predict_applies_it(tmp_path):
    data = make_flat(tmp_path / "data", per_class=10)
    photoclass.train(
        data,
        out=tmp_path / "run",
        model="compact-cnn",
        image_size=32,
        epochs=3,
        threads=1,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    result = json.loads((tmp_path / "run" / "test.json").read_text())
    temperature = json.loads((tmp_path / "run" / "model.json").read_text())["temperature"]
    test = result["test"]
    assert temperature == result["temperature"] > 0
    assert test["accuracy_interval"] == list(wilson_interval(round(test["accuracy"] * test["count"]), test["count"]))
    assert 0 <= test["ece"] <= 1 and 0 <= test["ece_unscaled"] <= 1
    assert sum(b["count"] for b in test["calibration_bins"]) == test["count"]
    assert len(result["wrong_paths"]) == round((1 - test["accuracy"]) * test["count"])  # for paired tests
    assert (tmp_path / "run" / "plots" / "calibration.png").is_file()

    predictor = Predictor(tmp_path / "run", device="cpu")
    photo = sorted(data.glob("*.jpg"))[0]
    p = predictor.predict([photo], top_k=3)[0]
    from photoclass.data.decode import decode_photo
    from photoclass.data.loader import normalize, to_float

    pixels = torch.from_numpy(decode_photo(photo, size=32).to_array()[None].copy())
    with torch.no_grad():
        logits = predictor.model(normalize(to_float(pixels), predictor.mean, predictor.std))
    expected = (logits / temperature).softmax(1)[0].numpy()
    assert p.confidence == pytest.approx(float(np.max(expected)), abs=1e-5)


@pytest.mark.trains
def test_predict_with_tta_averages_each_photo_and_its_mirror(tmp_path):
    data = make_flat(tmp_path / "data", per_class=6)
    photoclass.train(
        data,
        out=tmp_path / "run",
        model="compact-cnn",
        image_size=32,
        epochs=2,
        threads=1,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    from photoclass.data.decode import decode_photo

    photo = sorted(data.glob("*.jpg"))[0]
    pixels = decode_photo(photo, size=32).to_array()[None].copy()  # (1, S, S, 3)
    predictor = Predictor(tmp_path / "run", device="cpu")
    expected = (predictor.probabilities(pixels) + predictor.probabilities(pixels[:, :, ::-1].copy())) / 2
    tta = photoclass.predict(tmp_path / "run", [photo], top_k=3, tta=True, device="cpu")[0]
    best = int(expected[0].argmax())
    assert tta.label == predictor.classes[best] and tta.confidence == pytest.approx(float(expected[0, best]), abs=1e-6)
    assert not np.allclose(expected, predictor.probabilities(pixels))  # the mirror did change the answer
    from photoclass.inference.predictor import open_predictor

    assert not open_predictor(tmp_path / "run").tta  # measured without mirrors: predicts without them
    photoclass.train(
        data,
        out=tmp_path / "mirrored",
        model="compact-cnn",
        image_size=32,
        epochs=1,
        threads=1,
        tta=True,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    assert open_predictor(tmp_path / "mirrored").tta  # its test used mirrors: so do predict and serve
    assert not open_predictor(tmp_path / "mirrored", tta=False).tta


@pytest.mark.trains
@pytest.mark.slow
def test_folds_make_one_summary_run_with_its_interval_and_the_leaderboard_lists_it_once(tmp_path):
    from photoclass.experiments.leaderboard import list_runs

    data = make_flat(tmp_path / "data", per_class=10)
    common = [
        "--model",
        "compact-cnn",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--no-track",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    from photoclass.cli import main

    assert main(["train", str(data), "--folds", "3", "--out", str(tmp_path / "runs" / "cv"), *common]) == 0
    summary = json.loads((tmp_path / "runs" / "cv" / "summary.json").read_text())
    members = [json.loads((tmp_path / "runs" / "cv" / f"fold-{k}" / "test.json").read_text())["test"] for k in range(3)]
    assert summary["members"] == ["fold-0", "fold-1", "fold-2"]
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean([m["accuracy"] for m in members]), abs=1e-6)
    low, high = summary["test_accuracy"]["interval"]
    assert low <= summary["test_accuracy"]["mean"] <= high
    tests = [
        {
            r.split(",")[0]
            for r in (tmp_path / "runs" / "cv" / f"fold-{k}" / "split.csv").read_text().splitlines()
            if r.split(",")[2] == "test"
        }
        for k in range(3)
    ]
    assert not (tests[0] & tests[1]) and not (tests[1] & tests[2]) and len(set().union(*tests)) == 30  # each photo once
    board = list_runs(tmp_path / "runs")
    assert len(board) == 1 and board[0].interval == (low, high)

    assert main(["train", str(data), "--seeds", "0,1", "--out", str(tmp_path / "runs" / "seeds"), *common]) == 0
    assert json.loads((tmp_path / "runs" / "seeds" / "summary.json").read_text())["test_accuracy"]["n"] == 2
    assert len(list_runs(tmp_path / "runs")) == 2


@pytest.mark.trains
def test_a_summary_run_continues_where_it_stopped_and_points_to_its_members(tmp_path):
    from photoclass.cli import main
    from photoclass.workflows.repeat import train_repeated

    data = make_flat(tmp_path / "data", per_class=6)
    options = dict(
        model="compact-cnn",
        image_size=32,
        epochs=1,
        threads=1,
        track=False,
        progress=False,
        cache_dir=tmp_path / "cache",
        verbose=False,
    )
    out = tmp_path / "seeds"
    photoclass.train(data, out=out / "seed-0", seed=0, **options)  # as if stopped after its first member
    first = (out / "seed-0" / "model.safetensors").stat().st_mtime_ns
    summary = train_repeated(data, seeds=[0, 1], out=out, **options)
    assert summary["members"] == ["seed-0", "seed-1"] and summary["test_accuracy"]["n"] == 2
    assert (out / "seed-0" / "model.safetensors").stat().st_mtime_ns == first  # kept, not trained again
    with pytest.raises(
        photoclass.PhotoclassError,
        match=r"is a summary of several runs.*HINT: .*seeds/seed-[01] "
        r"\(the best test accuracy",
    ):
        Predictor(out)
    with pytest.raises(photoclass.PhotoclassError, match="already holds a summary run"):
        train_repeated(data, seeds=[0, 1], out=out, **options)
    with pytest.raises(photoclass.PhotoclassError, match="is a run of its own"):
        train_repeated(data, seeds=[2, 3], out=out / "seed-0", **options)
    with pytest.raises(photoclass.PhotoclassError, match="One seed makes no spread"):
        train_repeated(data, seeds=[3], out=tmp_path / "one", **options)
    # more folds than groups: one line before anything trains
    assert (
        main(
            [
                "train",
                str(data),
                "--folds",
                "20",
                "--out",
                str(tmp_path / "cv"),
                "--model",
                "compact-cnn",
                "--image-size",
                "32",
                "--no-track",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "cv" / "fold-0" / "config.json").exists()


@pytest.mark.trains
def test_an_interrupted_member_stops_the_summary_run_and_the_same_call_resumes_it(tmp_path):
    from photoclass.workflows.repeat import train_repeated

    data = make_flat(tmp_path / "data", per_class=6)
    options = dict(
        model="compact-cnn",
        image_size=32,
        epochs=2,
        threads=1,
        track=False,
        progress=False,
        cache_dir=tmp_path / "cache",
        verbose=False,
    )
    calls = []

    def ctrl_c_in_the_second_member(row):
        calls.append(row["epoch"])
        if len(calls) == 3:  # seed-0 ran epochs 1 and 2; this is seed-1's first
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_repeated(data, seeds=[0, 1, 2], out=tmp_path / "s", on_epoch=ctrl_c_in_the_second_member, **options)
    assert (tmp_path / "s" / "seed-1" / "last.ckpt").exists() and not (tmp_path / "s" / "seed-2").exists()
    assert not (tmp_path / "s" / "summary.json").exists()
    summary = train_repeated(data, seeds=[0, 1, 2], out=tmp_path / "s", **options)
    assert summary["test_accuracy"]["n"] == 3
    assert len(photoclass.runs.rundir.RunDir(tmp_path / "s" / "seed-1").read_csv("metrics.csv")) == 2
    from photoclass.experiments.leaderboard import list_runs

    board = list_runs(tmp_path)
    assert len(board) == 1 and board[0].extra["members"] == 3
    shutil.rmtree(tmp_path / "s" / "seed-2")  # a member removed by hand: the others are listed, nothing fails
    board = list_runs(tmp_path)
    assert sorted(r.path.name for r in board) == ["seed-0", "seed-1"] and board.incomplete == 1
