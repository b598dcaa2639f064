"""The "none of these" check: the k-nearest-training-photo distance, fitted at training, carried by every
way a prediction is made (Python, the CLI's table, JSON and sorting, ONNX, the server)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import photoclass
from photoclass.inference import outliers

from conftest import make_folders, request, start_server

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"
RAIN, SHINE = sorted(EXAMPLES.glob("rain*.jpg"))[0], sorted(EXAMPLES.glob("shine*.jpg"))[0]


def test_the_score_is_the_cosine_distance_to_the_kth_nearest_training_photo():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(50, 8)), rng.normal(size=(7, 8))
    score = outliers.OutlierScore(torch.from_numpy(bank), k=3)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = np.sort(1 - unit(queries) @ unit(bank).T, axis=1)[:, 2]
    assert np.allclose(score(torch.from_numpy(queries)).numpy(), expected, atol=1e-6)


def test_scores_in_chunks_and_a_sampled_bank_are_what_the_whole_computation_gives(monkeypatch):
    rng = np.random.default_rng(2)
    bank, queries = torch.from_numpy(rng.normal(size=(300, 8))), torch.from_numpy(rng.normal(size=(70, 8)))
    for k in (1, 3):
        score = outliers.OutlierScore(bank, k=k)
        assert torch.allclose(score.scores(queries, chunk=16), score(queries), atol=1e-6)  # BLAS blocks by shape
        whole = 1 - (torch.nn.functional.normalize(bank.float(), dim=1) @ score.bank.T).topk(k + 1).values[:, -1]
        alone = torch.arange(len(bank))
        assert torch.allclose(score.scores(bank, groups=alone, chunk=32), whole, atol=1e-6)  # nearest other
    monkeypatch.setattr(outliers, "MAX_BANK", 100)
    keep = outliers.bank_rows(300, seed=5)
    assert len(keep) == 100 and (np.diff(keep) > 0).all() and np.array_equal(keep, outliers.bank_rows(300, seed=5))
    head = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    batches = [(bank[i : i + 32].float(), None) for i in range(0, 300, 32)]  # batches that straddle kept rows
    everything = outliers.features_of(head, batches, rows=300)
    assert torch.equal(outliers.features_of(head, batches, rows=300, keep=keep), everything[keep])
    sampled, _ = outliers.fit(everything, everything[:50], seed=5)  # fit samples the same rows itself
    chosen, _ = outliers.fit(everything[keep], everything[:50], rows=keep, seed=5)
    assert torch.allclose(sampled.bank, chosen.bank) and torch.equal(sampled.rows, chosen.rows)


def test_the_threshold_accepts_the_chosen_share_of_the_validation_photos():
    rng = np.random.default_rng(1)
    inside, outside = np.r_[np.full(8, 3.0), np.zeros(8)], np.r_[np.zeros(8), np.full(8, 3.0)]
    train = torch.from_numpy(rng.normal(size=(200, 16)) + inside)
    val = torch.from_numpy(rng.normal(size=(400, 16)) + inside)
    score, info = outliers.fit(train, val, accept=0.9, k=5)
    assert info["k"] == 5 and info["accept"] == 0.9 and info["validated_on"] == 400
    assert abs(float((score(val) <= info["threshold"]).float().mean()) - 0.9) <= 0.005
    far = torch.from_numpy(rng.normal(size=(20, 16)) + outside)  # another direction: cosine, not length
    assert bool((score(far) > info["threshold"]).all())
    assert bool((score(3 * val[:20]) <= info["threshold"]).float().mean() >= 0.8)  # scale alone is no outsider


def test_each_training_photo_is_scored_against_the_photos_outside_its_duplicate_group():
    rng = np.random.default_rng(3)
    photos = torch.from_numpy(rng.normal(size=(40, 8)))
    bank = torch.cat([photos, photos[:10] + 1e-4])  # rows 40-49 are near-copies of rows 0-9
    groups = torch.cat([torch.arange(40), torch.arange(10)])
    score = outliers.OutlierScore(bank)
    unit = torch.nn.functional.normalize(bank.float(), dim=1)
    similarity = unit @ unit.T
    similarity[groups[:, None] == groups[None, :]] = -2  # by hand: the photo and its copy left out
    assert torch.allclose(score.scores(bank, groups=groups, chunk=7), 1 - similarity.amax(dim=1), atol=1e-6)
    alone = score.scores(bank, groups=torch.arange(50))
    assert float(alone[:10].max()) < 1e-3 < float(score.scores(bank, groups=groups)[:10].min())  # a copy is no proof
    with pytest.raises(ValueError, match="bank's 50 rows"):
        score.scores(photos, groups=groups[:40])


def test_the_threshold_reads_the_training_photos_too_when_the_validation_split_is_small():
    rng = np.random.default_rng(4)
    train = torch.from_numpy(rng.normal(size=(600, 16)) + np.r_[np.full(8, 3.0), np.zeros(8)])
    val = torch.from_numpy(rng.normal(size=(12, 16)) + np.r_[np.full(8, 3.0), np.zeros(8)])
    new = torch.from_numpy(rng.normal(size=(2000, 16)) + np.r_[np.full(8, 3.0), np.zeros(8)])
    only_val, small = outliers.fit(train, val)
    both, large = outliers.fit(train, val, groups=np.arange(len(train)))
    assert (small["validated_on"], large["validated_on"]) == (12, 612)
    assert large["reference"].startswith("validation and training") and small["reference"] == "validation photos"
    alone = outliers.fit(train, val[:0])[1]  # no validation split: the training photos, each left out
    assert alone["reference"].startswith("training photos, each") and alone["validated_on"] == len(train)
    accepted = float((both.scores(new) <= large["threshold"]).float().mean())
    assert abs(accepted - 0.975) <= 0.015  # 612 photos estimate a 2.5% tail; 12 photos only give their maximum


@pytest.fixture(scope="module")
def weather_run(tmp_path_factory):
    """The shipped example photos, Lite0's frozen features; flat synthetic drawings as outsiders."""
    base = tmp_path_factory.mktemp("outliers")
    photoclass.train(
        EXAMPLES,
        model="efficientnet-lite0",
        out=base / "run",
        cache_dir=base / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    return {"run": base / "run", "outside": make_folders(base / "drawings", per_class=8), "base": base}


@pytest.mark.trains
def test_training_fits_the_check_and_predict_marks_photos_of_no_class(weather_run):
    run = weather_run["run"]
    meta = json.loads((run / "model.json").read_text())["outliers"]
    assert meta["accept"] == 0.975 and meta["k"] == outliers.K and (run / "outliers.safetensors").is_file()
    drawings = photoclass.predict(run, [weather_run["outside"]])
    photos = photoclass.predict(run, [EXAMPLES])
    assert all(p.outlier_score is not None for p in drawings + photos)
    assert np.mean([p.unknown for p in drawings]) >= 0.9  # gradients with rectangles are no weather
    assert np.mean([p.unknown for p in photos]) <= 0.1  # the training photos themselves are known
    assert all(p.unknown == (p.outlier_score > meta["threshold"]) for p in drawings + photos)
    assert all(p.label in ("cloudy", "rain", "shine", "sunrise") for p in drawings)  # the top class stays
    unchecked = photoclass.predict(run, [weather_run["outside"]], unknown=False)
    assert all(p.outlier_score is None and not p.unknown for p in unchecked)
    assert "unknown" not in unchecked[0].to_dict() and drawings[0].to_dict()["unknown"] is True


@pytest.mark.trains
def test_the_cli_shows_unknown_and_sorts_such_photos_apart(weather_run, tmp_path):
    run, outside = weather_run["run"], weather_run["outside"]
    before = sorted((p, p.stat().st_size) for p in outside.rglob("*") if p.is_file())
    env = {**os.environ, "PHOTOCLASS_TRACKING": "off"}
    table = subprocess.run(
        [sys.executable, "-m", "photoclass", "predict", run, outside, RAIN, "--sort-into", tmp_path / "sorted"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith(str(outside))]
    assert table.stdout.splitlines()[0].split() == ["path", "label", "conf", "unknown", "top"]
    assert rows and sum(r[3] == "yes" for r in rows) >= 0.9 * len(rows)
    assert all(r[1] in ("cloudy", "rain", "shine", "sunrise") for r in rows)  # the closest class, as in CSV and JSON
    assert next(line for line in table.stdout.splitlines() if line.startswith(str(RAIN))).split()[1:4:2] == [
        "rain",
        "no",
    ]
    unknown = len(list((tmp_path / "sorted" / "_unknown").iterdir()))
    assert unknown == sum(r[3] == "yes" for r in rows) and (tmp_path / "sorted" / "rain").is_dir()
    as_csv = subprocess.run(
        [sys.executable, "-m", "photoclass", "predict", run, outside, "--format", "csv"],
        capture_output=True,
        text=True,
        env=env,
    )
    by_path = {r["path"]: r for r in csv.DictReader(as_csv.stdout.splitlines())}
    assert all(
        (by_path[r[0]]["label"], by_path[r[0]]["unknown"]) == (r[1], "true" if r[3] == "yes" else "false") for r in rows
    )  # one meaning in the table and the CSV
    assert sorted((p, p.stat().st_size) for p in outside.rglob("*") if p.is_file()) == before  # copied, not moved
    as_json = subprocess.run(
        [sys.executable, "-m", "photoclass", "predict", run, outside, "--format", "json", "--no-unknown"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert as_json.returncode == 0 and all("unknown" not in p for p in json.loads(as_json.stdout))


@pytest.mark.trains
def test_evaluate_outsiders_measures_how_well_they_are_told_apart(weather_run):
    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoclass",
            "evaluate",
            weather_run["run"],
            "--outsiders",
            weather_run["outside"],
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PHOTOCLASS_TRACKING": "off"},
    )
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert result["outsider_photos"] == 24 and result["test_photos"] > 0
    assert result["auroc"] > 0.95 and result["outsiders_accepted"] <= 0.1
    assert Path(result["written_to"]).is_file() and Path(result["written_to"]).with_suffix(".png").is_file()


@pytest.mark.trains
def test_the_onnx_export_carries_the_score_as_a_second_output(weather_run, tmp_path):
    from photoclass.inference.export import export_onnx

    exported = export_onnx(weather_run["run"], tmp_path / "model.onnx")  # parity checked on both outputs
    import onnx

    assert [o.name for o in onnx.load(exported["path"]).graph.output] == ["logits", "outlier_score"]
    via_onnx = photoclass.predict(exported["path"], [weather_run["outside"]])
    via_torch = photoclass.predict(weather_run["run"], [weather_run["outside"]])
    assert [p.unknown for p in via_onnx] == [p.unknown for p in via_torch]
    assert max(abs(a.outlier_score - b.outlier_score) for a, b in zip(via_onnx, via_torch)) < 1e-4


@pytest.mark.trains
@pytest.mark.slow
def test_the_server_answers_unknown(weather_run):
    proc, url = start_server(weather_run["run"], "--engine", "torch")
    try:
        photo = next(weather_run["outside"].rglob("*.jpg")).read_bytes()
        status, body = request(f"{url}/predict", data=photo, headers={"Content-Type": "image/jpeg"})
        answer = json.loads(body)
        assert status == 200 and answer["unknown"] is True and answer["outlier_score"] > 0
        status, body = request(f"{url}/predict", data=SHINE.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert json.loads(body)["unknown"] is False and json.loads(body)["label"] == "shine"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.trains
def test_similar_lists_the_nearest_training_photos_with_their_labels(weather_run, tmp_path):
    run = weather_run["run"]
    rows = [r for r in csv.DictReader((run / "split.csv").open()) if r["split"] == "train"]
    photo = EXAMPLES / rows[0]["path"]
    found = photoclass.similar(run, [photo, weather_run["outside"] / "rain"], k=4)
    itself = found[0]
    assert [n.path for n in itself.neighbours][0] == str(photo) and itself.neighbours[0].distance < 1e-5
    assert itself.neighbours[0].label == rows[0]["label"] and len(itself.neighbours) == 4
    assert [n.distance for n in itself.neighbours] == sorted(n.distance for n in itself.neighbours)
    labels = {str(EXAMPLES / r["path"]): r["label"] for r in csv.DictReader((run / "split.csv").open())}
    assert all(labels[n.path] == n.label for s in found for n in s.neighbours)  # labels as given, not predicted
    by_predict = {p.path: p for p in photoclass.predict(run, [photo, weather_run["outside"] / "rain"])}
    for s in found:  # the same score and verdict as predict's, from the same index
        assert s.prediction.unknown == by_predict[s.prediction.path].unknown
        assert abs(s.prediction.outlier_score - by_predict[s.prediction.path].outlier_score) < 1e-5

    page = tmp_path / "similar.html"
    shown = subprocess.run(
        [sys.executable, "-m", "photoclass", "similar", run, photo, "-k", "2", "--format", "json", "--html", page],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)[0]
    assert answer["nearest"][0] == {"path": str(photo), "label": rows[0]["label"], "distance": 0.0}
    assert page.read_text().count("<img") == 3  # the photo and its two neighbours
    for folder in (EXAMPLES, weather_run["outside"] / "rain"):  # the run's photos, the photos asked about
        inside = subprocess.run(
            [
                sys.executable,
                "-m",
                "photoclass",
                "similar",
                run,
                weather_run["outside"],
                "--html",
                folder / "page.html",
            ],
            capture_output=True,
            text=True,
        )
        assert inside.returncode == 2 and "--html" in inside.stderr and not (folder / "page.html").exists()


@pytest.mark.trains
def test_the_report_shows_the_test_scores_and_each_mistake_beside_its_nearest_training_photos(weather_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(weather_run["run"], run)
    result = json.loads((run / "test.json").read_text())
    meta = json.loads((run / "model.json").read_text())["outliers"]
    test = [EXAMPLES / r["path"] for r in csv.DictReader((run / "split.csv").open()) if r["split"] == "test"]
    predicted = photoclass.predict(run, test)
    scores = result["outlier_scores"]
    assert scores["test_photos"] == len(test) and scores["threshold"] == meta["threshold"]
    assert scores["test_accepted"] == pytest.approx(np.mean([not p.unknown for p in predicted]))
    # a mistake, as training records one, explained by the photos `similar` finds
    nearest = photoclass.similar(run, [test[0]], k=3)[0].neighbours
    result["misclassified"] = [
        {
            "path": test[0].name,
            "true": "rain",
            "predicted": "shine",
            "confidence": 0.9,
            "index": 0,
            "nearest": [n.to_dict() for n in nearest],
        }
    ]
    (run / "test.json").write_text(json.dumps(result))
    html = Path(photoclass.report(run)).read_text()
    assert "id=unknown" in html and "outlier_scores" in html and "nearest training photos" in html
    assert html.count("<figure class=near>") == 3


@pytest.mark.trains
def test_predict_never_writes_into_the_folder_the_run_was_trained_on(weather_run, tmp_path):
    from photoclass.inference.export import export_onnx

    run, outside = weather_run["run"], weather_run["outside"]
    export_onnx(run, run / "model.onnx")
    before = sorted(p.name for p in EXAMPLES.iterdir())
    env = {**os.environ, "PHOTOCLASS_TRACKING": "off"}
    for model in (run, run / "model.onnx"):
        for flag, target in (("--sort-into", EXAMPLES / "sorted"), ("--out", EXAMPLES / "predictions.csv")):
            found = subprocess.run(
                [sys.executable, "-m", "photoclass", "predict", model, outside, flag, target],
                capture_output=True,
                text=True,
                env=env,
            )
            assert found.returncode != 0 and "Traceback" not in found.stderr
            assert f"{flag} {target} is inside the data folder {EXAMPLES}" in found.stderr
    assert sorted(p.name for p in EXAMPLES.iterdir()) == before
