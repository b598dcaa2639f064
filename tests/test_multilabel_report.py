"""The report of a multi-label run: a row per label with its counts at the saved threshold, the
precision-recall curves with those thresholds, and each wrong photo's missed and extra labels."""

import csv
import html
import json
import re

import numpy as np
import pytest

import photoclass
from test_multilabel_train import squares

pytestmark = [pytest.mark.trains]

LABELS = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run over the squares, the report its training wrote, and each test photo's true and
    predicted sets (from `Predictor`, apart from the evaluation that wrote the report)."""
    from photoclass.inference.predictor import Predictor

    base = tmp_path_factory.mktemp("report")
    data, truth = squares(base / "photos")
    options = dict(model="compact-cnn", image_size=32, epochs=6, threads=1, seed=0)
    photoclass.train(data, out=base / "run", cache_dir=base / "cache", verbose=False, progress=False, **options)
    tested = [r["path"] for r in csv.DictReader((base / "run" / "split.csv").open()) if r["split"] == "test"]
    predicted = Predictor(base / "run", unknown=False).predict([data.parent / p for p in tested])
    sets = {p: (set(truth[p].split()), set(found.labels)) for p, found in zip(tested, predicted)}
    return base / "run", (base / "run" / "report.html").read_text(), sets


def per_label_rows(page: str) -> dict[str, dict[str, str]]:
    """The per-label table of the report, as {label: {header: cell}}."""
    table = re.search(r"<div id=per-label>(.*?)</div>", page, re.S).group(1)
    rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    header = rows[0]
    return {cells[0]: dict(zip(header, cells)) for cells in rows[1:]}


def test_the_per_label_table_counts_each_label_at_its_saved_threshold(run):
    path, page, sets = run
    table = per_label_rows(page)
    assert sorted(table) == LABELS
    thresholds = json.loads((path / "model.json").read_text())["decision"]["thresholds"]
    for label, threshold in zip(LABELS, thresholds):
        has = np.array([label in true for true, _ in sets.values()])
        given = np.array([label in found for _, found in sets.values()])
        row = table[label]
        assert int(row["TP"]) == (has & given).sum() and int(row["FP"]) == (~has & given).sum()
        assert int(row["FN"]) == (has & ~given).sum() and int(row["TN"]) == (~has & ~given).sum()
        assert float(row["threshold"]) == pytest.approx(threshold, abs=5e-4)
        assert 0 <= float(row["ECE"]) <= 1


def test_each_label_has_its_precision_recall_curve_through_its_threshold(run):
    path, page, sets = run
    assert re.search(r"<img class=plot alt='pr_curves' src='data:image/png;base64,", page)
    assert (path / "plots" / "pr_curves.png").is_file()
    test = json.loads((path / "test.json").read_text())["test"]
    for label in LABELS:
        has = np.array([label in true for true, _ in sets.values()])
        given = np.array([label in found for _, found in sets.values()])
        curve = test["pr_curves"][label]
        assert curve["recall"] == sorted(curve["recall"]) and curve["recall"][-1] == 1.0
        if given.any():  # the point the plot marks, where the saved threshold cuts the curve
            point = ((has & given).sum() / has.sum(), (has & given).sum() / given.sum())
            assert any(
                r == pytest.approx(point[0], abs=1e-4) and p == pytest.approx(point[1], abs=1e-4)
                for r, p in zip(curve["recall"], curve["precision"])
            )


def test_a_wrong_photo_shows_the_labels_it_missed_and_those_it_was_given_extra(run):
    _, page, sets = run
    wrong = {p: (true - found, found - true) for p, (true, found) in sets.items() if true != found}
    assert wrong, "the short training should leave a test photo with a wrong set"
    assert f"Test photos with a wrong label set ({len(wrong)} of {len(sets)})" in page
    for photo, (missed, extra) in wrong.items():
        caption = re.search(rf"<figure data-path='{photo}'>.*?<figcaption>(.*?)<br>{photo}", page, re.S).group(1)
        shown = {
            kind: set(html.unescape(found.group(1)).split(", ")) if found else set()
            for kind in ("missed", "extra")
            for found in [re.search(rf"<b class={kind}>(.*?)</b>", caption)]
        }
        assert shown == {"missed": missed, "extra": extra}, photo


def test_the_calibration_is_pooled_over_labels(run):
    path, page, _ = run
    test = json.loads((path / "test.json").read_text())["test"]
    pairs = test["count"] * len(LABELS)
    assert sum(b["count"] for b in test["calibration_bins"]) == pairs
    assert all(0 <= b["frequency"] <= 1 and 0 < b["probability"] <= 1 for b in test["calibration_bins"])
    assert f"pooled over every photo and label; each label's is in the table above): {test['ece']:.3f}" in page
