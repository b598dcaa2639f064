"""Intervals and calibrated confidences: Wilson intervals, ECE, temperature scaling end to end."""
import json

import numpy as np
import pytest
import torch

import photoclass
from photoclass.evaluation.calibration import fit_temperature
from photoclass.evaluation.metrics import expected_calibration_error, wilson_interval
from photoclass.inference.predictor import Predictor

from conftest import make_flat


def test_wilson_interval_matches_the_formula_and_stays_inside_zero_and_one():
    low, high = wilson_interval(14, 16)
    assert low == pytest.approx(0.6398, abs=1e-4) and high == pytest.approx(0.9650, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert wilson_interval(162, 168)[0] < 162 / 168 < wilson_interval(162, 168)[1]


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


@pytest.mark.trains
def test_a_run_saves_its_temperature_and_predict_applies_it(tmp_path):
    data = make_flat(tmp_path / "data", per_class=10)
    photoclass.train(data, out=tmp_path / "run", model="compact-cnn", image_size=32, epochs=3, threads=1,
                     cache_dir=tmp_path / "cache", verbose=False, progress=False, track=False)
    result = json.loads((tmp_path / "run" / "test.json").read_text())
    temperature = json.loads((tmp_path / "run" / "model.json").read_text())["temperature"]
    test = result["test"]
    assert temperature == result["temperature"] > 0
    assert test["accuracy_interval"] == list(wilson_interval(round(test["accuracy"] * test["count"]), test["count"]))
    assert 0 <= test["ece"] <= 1 and 0 <= test["ece_unscaled"] <= 1
    assert sum(b["count"] for b in test["calibration_bins"]) == test["count"]
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
