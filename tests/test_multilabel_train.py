"""Several labels a photo, end to end: a CSV of label sets trains, evaluates with mAP and
thresholds per label, predicts sets, sorts into every label's folder, and exports them."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import photoclass
from conftest import headless_chromium, needs_chromium

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}

pytestmark = [pytest.mark.trains]


def squares(root, photos=90, seed=0):
    """Grey photos with a coloured square for each of their labels (none, one, two or three)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(photos):
        pixels = (rng.random((64, 64, 3)) * 60 + 100).astype(np.uint8)
        labels = [c for c in COLOURS if rng.random() < 0.45]
        for c in labels:
            y, x = rng.integers(0, 40, 2)
            pixels[y : y + 24, x : x + 24] = COLOURS[c]
        Image.fromarray(pixels).save(root / f"p{i:03d}.png")
        rows.append((f"p{i:03d}.png", " ".join(labels)))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    return root / "labels.csv", dict(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi")
    data, truth = squares(base / "photos")
    options = dict(model="compact-cnn", image_size=32, epochs=12, threads=1, seed=0)
    photoclass.train(data, out=base / "run", cache_dir=base / "cache", verbose=False, progress=False, **options)
    return base, data, truth


def test_a_csv_of_label_sets_trains_a_multi_label_model_with_a_threshold_per_label(trained):
    base, _, _ = trained
    meta = json.loads((base / "run" / "model.json").read_text())
    assert meta["task"] == "multi-label" and meta["classes"] == ["blue", "green", "red"]
    assert meta["decision"]["rule"] == "f1" and len(meta["decision"]["thresholds"]) == 3
    test = json.loads((base / "run" / "test.json").read_text())["test"]
    low, high = test["mAP_interval"]
    assert low <= test["mAP"] <= high and test["error"] == pytest.approx(1 - test["mAP"])
    assert test["mAP"] > 0.7  # three coloured squares are easy to tell apart
    assert set(test["per_class"]) == {"blue", "green", "red"}
    assert all(c["threshold"] == t for c, t in zip(test["per_class"].values(), meta["decision"]["thresholds"]))
    split = (base / "run" / "split.csv").read_text()
    assert any(";" in line.split(",")[1] for line in split.splitlines()[1:])  # sets kept in one column


def test_predict_answers_a_set_and_sort_files_a_photo_under_each_label(trained, tmp_path):
    base, data, truth = trained
    photos = sorted(data.parent.glob("*.png"))[:30]
    run = subprocess.run(
        [sys.executable, "-m", "photoclass", "predict", str(base / "run"), *map(str, photos), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout)
    for a in answers:  # the set, most probable first, and every label's probability
        assert set(a["scores"]) == {"blue", "green", "red"}
        assert [a["scores"][label] for label in a["labels"]] == sorted(
            (a["scores"][x] for x in a["labels"]), reverse=True
        )
    right = [set(a["labels"]) == set(truth[a["path"].rsplit("/", 1)[1]].split()) for a in answers]
    assert np.mean(right) > 0.6
    from photoclass.inference.predictor import Predictor
    from photoclass.inference.sort import NO_LABEL, sort_into

    predictor = Predictor(base / "run", unknown=False)
    predictions = predictor.predict(photos)
    counts = sort_into(predictions, tmp_path / "sorted", task=predictor.task)
    copies = sum(len(p.labels) or 1 for p in predictions)
    assert sum(counts.values()) == copies  # each photo once per label it has, or in _no_label
    several = next(p for p in predictions if len(p.labels) >= 2)
    name = several.path.rsplit("/", 1)[1]
    assert all((tmp_path / "sorted" / label / name).is_file() for label in several.labels)
    assert set(counts) <= {"blue", "green", "red", NO_LABEL}


@pytest.mark.parametrize("format", ["onnx", "openvino", "litert"])
def test_every_export_carries_the_thresholds(trained, format):
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino", "litert": "ai_edge_litert"}[format])
    from photoclass.inference.export import export
    from photoclass.inference.predictor import Predictor, open_predictor

    base, data, _ = trained
    found = export(base / "run", format)
    assert found["kept"], found.get("why_not")
    photos = sorted(data.parent.glob("*.png"))[:20]
    exported = open_predictor(found["path"], unknown=False)
    assert exported.task.state() == Predictor(base / "run", unknown=False).task.state()
    want = [p.labels for p in Predictor(base / "run", unknown=False).predict(photos)]
    assert [p.labels for p in exported.predict(photos)] == want


def test_predictions_to_a_csv_hold_the_set_and_every_score(trained, tmp_path):
    base, data, _ = trained
    photos = sorted(data.parent.glob("*.png"))[:6]
    out = tmp_path / "found.csv"
    run = subprocess.run(
        [sys.executable, "-m", "photoclass", "predict", str(base / "run"), *map(str, photos), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and {"labels", "score:blue", "score:green", "score:red"} <= set(rows[0])
    meta = json.loads((base / "run" / "model.json").read_text())
    thresholds = dict(zip(meta["classes"], meta["decision"]["thresholds"]))
    for row in rows:  # the set is every label at or above its threshold
        over = {label for label, cut in thresholds.items() if float(row[f"score:{label}"]) >= cut}
        assert set(row["labels"].split()) == over
    shown = subprocess.run(
        [sys.executable, "-m", "photoclass", "predict", str(base / "run"), *map(str, photos), "--format", "csv"],
        capture_output=True,
        text=True,
    ).stdout
    assert shown.splitlines()[0].split(",")[:3] == ["path", "label", "labels"]


def test_the_leaderboard_ranks_a_multi_label_run_by_map_and_apart_from_single_label_runs(trained, tmp_path):
    from photoclass.experiments.leaderboard import RunSummary, data_sets

    base, data, _ = trained
    single = tmp_path / "single"
    options = dict(model="compact-cnn", image_size=32, epochs=2, threads=1, task="single-label", label_sep=";")
    photoclass.train(data, out=single, cache_dir=base / "cache", verbose=False, progress=False, **options)
    multi, one = RunSummary.from_run(base / "run"), RunSummary.from_run(single)
    test = json.loads((base / "run" / "test.json").read_text())["test"]
    assert multi.task == "multi-label" and multi.test_error == pytest.approx(1 - test["mAP"])
    assert one.task == "single-label" and one.test_error == pytest.approx(1 - one.test_accuracy)
    sets = data_sets([multi, one])
    assert sorted(sets) == ["labels.csv", "labels.csv (multi-label: mAP)"]


def test_evaluate_re_measures_a_multi_label_run_with_its_saved_thresholds(trained):
    from photoclass.workflows.evaluate import evaluate_run

    base, data, _ = trained
    again = evaluate_run(base / "run", progress=False)["test"]
    first = json.loads((base / "run" / "test.json").read_text())["test"]
    assert again["mAP"] == pytest.approx(first["mAP"]) and again["macro_f1"] == pytest.approx(first["macro_f1"])
    elsewhere = evaluate_run(base / "run", data, progress=False)["test"]  # every photo of the CSV
    assert elsewhere["count"] == 90 and 0 <= elsewhere["mAP"] <= 1


def test_audit_finds_the_photos_whose_label_set_misses_one(tmp_path):
    data, truth = squares(tmp_path / "photos", photos=80)
    rows = list(csv.reader(data.open()))
    dropped = {}
    for row in rows[1:]:  # four photos with two squares lose one of their labels
        labels = row[1].split()
        if len(labels) == 2 and len(dropped) < 4:
            row[1], dropped[row[0]] = labels[0], labels[1]
    csv.writer(data.open("w", newline="")).writerows(rows)
    found = photoclass.audit(data, out=tmp_path / "audit", progress=False)
    top = {s["path"]: s for s in found.suspects[:10]}
    for path, label in dropped.items():
        assert path in top and top[path]["flagged"], path
        assert label in top[path]["suggested_label"].split(";")  # the missing label is the one suspected


@pytest.fixture(scope="module")
def served(trained):
    pytest.importorskip("fastapi")
    pytest.importorskip("onnxruntime")
    from conftest import start_server

    proc, url = start_server(trained[0] / "run")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_serve_answers_the_set_with_every_score(trained, served):
    from test_serve import upload

    photo = sorted(trained[1].parent.glob("*.png"))[0]
    status, answer = upload(served, photo.read_bytes(), "photo.png", "image/png")
    assert status == 200 and isinstance(answer["labels"], list) and set(answer["scores"]) == {"blue", "green", "red"}


@needs_chromium
def test_the_serve_page_shows_the_set(trained, served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_serve import upload

    photo = sorted(trained[1].parent.glob("*.png"))[0]
    answer = upload(served, photo.read_bytes(), "photo.png", "image/png")[1]
    with headless_chromium(tmp_path / "profile") as driver:
        driver.get(f"{served}/")
        chooser = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "file"))
        driver.execute_script("arguments[0].hidden = false", chooser)
        chooser.send_keys(str(photo))
        predicted = WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "predicted"))[0]
        assert predicted.text == (", ".join(answer["labels"]) or "none of the labels")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 3  # every label's score
