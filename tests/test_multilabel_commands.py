"""The commands around a multi-label run: its exports are held to mAP, and similar, compare,
runs, select, predict and report show label sets and rank by mAP, never beside single-label runs."""

import csv
from collections import Counter
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import photoclass
from photoclass.inference import verify
from photoclass.tasks import MultiLabel, SingleLabel

from test_multilabel_train import squares

pytestmark = [pytest.mark.trains]


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "photoclass", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two multi-label runs of the squares (seeds 0 and 1) under base/runs, and a single-label
    run of the same CSV (each cell one class) under base/single."""
    base = tmp_path_factory.mktemp("commands")
    data, truth = squares(base / "photos")
    options = dict(
        model="compact-cnn", image_size=32, threads=1, cache_dir=base / "cache", verbose=False, progress=False
    )
    for seed in (0, 1):
        photoclass.train(data, out=base / "runs" / f"seed-{seed}", epochs=12, seed=seed, **options)
    photoclass.train(data, out=base / "single" / "one", epochs=2, task="single-label", label_sep=";", **options)
    return base, data, truth


def saved_test(run):
    return json.loads((run / "test.json").read_text())


# the export rule, on crafted logits


def photos_of(labels):
    return verify.Photos(np.zeros((len(labels), 1, 1, 3), np.uint8), np.asarray(labels), "test")


def missed_positives(photos=200):
    """Labels, and logits where every photo is decided 'none': PyTorch ranks the missed
    positives above the negatives (high mAP), the export below them (the same sets, lower mAP)."""
    rng = np.random.default_rng(0)
    labels = (rng.random((photos, 3)) < 0.3).astype(np.float32)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    want = np.where(labels > 0, logit(0.4), logit(0.1)).astype(np.float32)
    got = np.where(labels > 0, logit(0.1), logit(0.4)).astype(np.float32)
    return labels, want, got


def test_an_export_whose_map_drops_is_refused_though_every_label_set_agrees():
    labels, want, got = missed_positives()
    task = MultiLabel([0.5, 0.5, 0.5])
    found = verify.judge(task, want, got, photos_of(labels), fp32=False)
    assert found["agreement"] == 1.0 and found["figure"] == "mAP" and found["photos"] == 200
    assert found["mAP_torch"] == pytest.approx(1.0) and found["mAP_torch"] - found["mAP"] > verify.MAX_ACCURACY_DROP
    assert not found["kept"]
    assert re.fullmatch(
        r"its test mAP is \d+\.\d\d% against PyTorch's 100\.00% \(more than 0\.5% lower\)", found["why_not"]
    )
    assert "accuracy" not in found  # the exact-match ratio is not what is compared
    assert verify.describe(found).startswith(
        f"test photos: 200, agreement with PyTorch 100.00%; test mAP {found['mAP']:.2%} (PyTorch 100.00%, 200 photos)"
    )


def test_an_export_within_half_a_point_of_map_is_kept_and_a_changed_set_is_named():
    labels, want, _ = missed_positives()
    task = MultiLabel([0.5, 0.5, 0.5])
    close = want + np.float32(1e-4)
    kept = verify.judge(task, want, close, photos_of(labels), fp32=True)
    assert kept["kept"] and kept["why_not"] == "" and kept["mAP"] == pytest.approx(kept["mAP_torch"])
    assert kept["rule"] == "agreement >= 99.5%, mAP within 0.5%, logits within 0.001"
    flipped = want.copy()
    flipped[:2, 0] = 5.0  # two photos of 200 gain a label: 99.0% agreement
    refused = verify.judge(task, want, flipped, photos_of(labels), fp32=False)
    assert not refused["kept"] and refused["agreement"] == pytest.approx(0.99)
    assert refused["why_not"].startswith(
        "it predicts another label set than PyTorch for 2 of 200 test photos (agreement 99.00% < 99.5%)"
    )


def test_a_single_label_export_is_still_held_to_accuracy_in_the_same_words():
    labels = np.array([0, 1, 2, 0] * 50)
    want = np.eye(3, dtype=np.float32)[labels] * 4
    got = want.copy()
    got[:2] = np.roll(got[:2], 1, axis=1)  # two photos of 200 go to another class
    found = verify.judge(SingleLabel(), want, got, photos_of(labels), fp32=False)
    assert (found["accuracy_torch"], found["accuracy"], found["figure"]) == (1.0, 0.99, "accuracy")
    assert found["why_not"] == (
        "it predicts another class than PyTorch for 2 of 200 test photos (agreement 99.00% < 99.5%); "
        "its test accuracy is 99.00% against PyTorch's 100.00% (more than 0.5% lower)"
    )
    assert verify.describe(found).startswith(
        "test photos: 200, agreement with PyTorch 99.00%; test accuracy 99.00% (PyTorch 100.00%, 200 photos)"
    )


def test_a_kept_onnx_export_reports_map_and_the_photos_it_was_measured_on(runs):
    pytest.importorskip("onnxruntime")
    base, _, _ = runs
    run = base / "runs" / "seed-1"
    done = cli("export", run)
    assert done.returncode == 0, done.stderr
    splits = Counter(r["split"] for r in csv.DictReader((run / "split.csv").open()) if r["status"] == "ok")
    torch_map = saved_test(run)["test"]["mAP"]
    judged = f"photos judged: {splits.total()} (train {splits['train']}, val {splits['val']}, test {splits['test']})"
    assert f"{judged}, agreement with PyTorch 100.00%" in done.stdout  # an fp32 export: every photo of the run
    # PyTorch's figure is the run's own test mAP
    assert f"test mAP {torch_map:.2%} (PyTorch {torch_map:.2%}, {splits['test']} photos)" in done.stdout


# similar, predict


def test_similar_shows_the_decided_set_and_each_neighbours_given_set(runs):
    base, data, truth = runs
    run = base / "runs" / "seed-0"
    train = [r["path"] for r in csv.DictReader((run / "split.csv").open()) if r["split"] == "train"]
    empty = next(p for p in train if not truth[p])  # a training photo with no square
    several = next(p for p in train if len(truth[p].split()) >= 2)
    found = cli("similar", run, data.parent / empty, data.parent / several, "-k", 3, "--format", "json")
    assert found.returncode == 0, found.stderr
    answers = json.loads(found.stdout)
    predicted = {p.path: p.to_dict() for p in photoclass.predict(run, [a["path"] for a in answers], progress=False)}
    for answer in answers:
        assert answer["labels"] == predicted[answer["path"]]["labels"]  # the set predict gives
        nearest = answer["nearest"]
        itself = answer["path"].rsplit("/", 1)[1]  # a training photo: its own row is among its nearest
        assert any(n["path"].endswith(itself) and n["distance"] < 1e-4 for n in nearest)
        for n in nearest:  # labels as given in the CSV, not as predicted
            assert sorted(n["labels"]) == sorted(truth[n["path"].rsplit("/", 1)[1]].split())
    table = cli("similar", run, data.parent / empty, "-k", 1).stdout.splitlines()
    near = table[1].split()[1].rsplit("/", 1)[1]
    given = " ".join(sorted(truth[near].split())) or "(none of the labels)"  # an empty set is said so
    assert re.fullmatch(rf"  1\. \S+{near}  {re.escape(given)} +\d\.\d{{4}}", table[1]), table


def test_predict_lists_each_set_says_none_of_the_labels_apart_from_unknown_and_writes_them(runs, tmp_path):
    base, data, truth = runs
    run = base / "runs" / "seed-0"
    photos = sorted(data.parent.glob("*.png"))[:40]
    answers = [p.to_dict() for p in photoclass.predict(run, photos, progress=False)]
    assert any(a["labels"] == [] for a in answers) and any(len(a["labels"]) >= 2 for a in answers)
    table = cli("predict", run, *photos).stdout.splitlines()
    head = table[0]
    assert head.split() == ["path", "labels", "conf", "unknown", "top"]
    end = head.index("conf") + len("conf")
    for answer, line in zip(answers, table[1:]):
        shown = " ".join(answer["labels"]) or "(none of the labels)"
        assert line.startswith(answer["path"]) and f"  {shown}  " in line
        assert line[:end].endswith(f"{answer['confidence']:.3f}")  # the columns stay aligned
        assert line[end:].split()[0] == ("yes" if answer["unknown"] else "no")  # unknown is its own column
    out = tmp_path / "found.jsonl"
    written = cli("predict", run, *photos, "--out", out)
    assert written.returncode == 0, written.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["path"], r["labels"]) for r in rows] == [(a["path"], a["labels"]) for a in answers]
    assert all(set(r["scores"]) == {"blue", "green", "red"} for r in rows)
    refused = cli("predict", run, *photos, "--out", tmp_path / "found.json")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "found.json" in refused.stderr and "HINT: end the name in .csv, .jsonl, .parquet" in refused.stderr


def test_predict_to_parquet_keeps_the_set_and_every_score(runs, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    base, data, _ = runs
    run = base / "runs" / "seed-0"
    photos = sorted(data.parent.glob("*.png"))[:10]
    out = tmp_path / "found.parquet"
    assert cli("predict", run, *photos[:4], "--out", out).returncode == 0
    assert cli("predict", run, *photos, "--out", out).returncode == 0  # resumed: the rest appended
    rows = pq.read_table(out).to_pylist()
    answers = [p.to_dict() for p in photoclass.predict(run, photos, progress=False)]
    assert [(r["labels"], r["scores"]) for r in rows] == [(a["labels"], a["scores"]) for a in answers]


# compare, runs, select, report


def test_compare_ranks_multi_label_runs_by_map_and_keeps_a_single_label_run_apart(runs, tmp_path):
    base, _, _ = runs
    multi = [base / "runs" / "seed-0", base / "runs" / "seed-1"]
    page = tmp_path / "compare.html"
    done = cli("compare", *multi, base / "single" / "one", "--out", page)
    assert done.returncode == 0, done.stderr
    assert "NOTE: these runs are on 2 data sets" in done.stdout
    text = page.read_text()
    head = re.findall(r"<th>(.*?)</th>", text)
    assert head[3:5] == ["test mAP", "test acc"]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in text.split("<tr")]
    rows = {row[1]: row for row in cells if row}
    for run in multi:
        assert rows[str(run)][3] == f"{saved_test(run)['test']['mAP']:.4f}"
    assert rows[str(base / "single" / "one")][3] == "-"
    assert "Selected on labels.csv (multi-label: mAP):" in text and "test error (1 - mAP)" in text
    assert "Selected on labels.csv:" not in text  # a single run of its own: nothing to rank it against


def expected_winner(runs, tolerance):
    """select's rule, from the test.json files: the lowest 1 - mAP, within `tolerance` the smallest gap."""
    found = {run: saved_test(run) for run in runs}
    error = {run: 1 - t["test"]["mAP"] for run, t in found.items()}
    near = [run for run in runs if error[run] <= min(error.values()) + tolerance + 1e-12]
    return min(near, key=lambda run: (round(abs(found[run]["generalization_gap"]), 9), error[run]))


@pytest.mark.parametrize("tolerance", [0.01, 0.99])
def test_select_picks_a_multi_label_run_by_map_then_the_smallest_gap(runs, tolerance):
    base, _, _ = runs
    done = cli("select", base / "runs", "--tolerance", tolerance)
    assert done.returncode == 0, done.stderr
    winner = expected_winner([base / "runs" / "seed-0", base / "runs" / "seed-1"], tolerance)
    assert done.stdout.startswith(f"{winner} ") and "test error (1 - mAP)" in done.stdout


def test_runs_lists_map_with_its_interval_and_select_separates_the_tasks(runs):
    base, _, _ = runs
    listed = json.loads(cli("runs", base / "runs", "--json").stdout)
    for entry in listed:
        test = saved_test(base / "runs" / entry["run"].rsplit("/", 1)[1])["test"]
        assert entry["task"] == "multi-label" and entry["test_mAP"] == pytest.approx(test["mAP"])
        assert entry["test_mAP_interval"] == pytest.approx(test["mAP_interval"])
        assert entry["test_error"] == pytest.approx(1 - test["mAP"])
    both = [base / "runs", base / "single"]
    refused = cli("select", *both)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        "HINT: pass --data FOLDER (or its name) to choose among one, e.g. --data 'labels.csv (multi-label: mAP)'"
        in (refused.stderr)
    )
    multi = cli("select", *both, "--data", "labels.csv (multi-label: mAP)")
    assert multi.returncode == 0 and multi.stdout.startswith(str(base / "runs"))
    single = cli("select", *both, "--data", "labels.csv")
    assert single.returncode == 0 and single.stdout.startswith(str(base / "single" / "one"))


def test_report_of_a_multi_label_run_is_written(runs):
    base, _, _ = runs
    run = base / "runs" / "seed-1"
    done = cli("report", run)
    assert done.returncode == 0, done.stderr
    assert "mAP" in (run / "report.html").read_text()
