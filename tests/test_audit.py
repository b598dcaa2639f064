"""`photoclass audit`: likely mislabeled photos found with cleanlab, the folder left as it was."""

import csv
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import sha256_tree

pytest.importorskip("cleanlab", reason="the audit extra is not installed")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"


@pytest.mark.trains
@pytest.mark.slow  # it fits classifiers on pretrained features
def test_audit_ranks_flipped_labels_near_the_top_and_changes_nothing(tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(EXAMPLES, photos)
    names = sorted(p.name for p in photos.glob("*.jpg"))
    classes = sorted({n.rstrip("0123456789.jpg") for n in names})
    flipped = {}
    for name in random.Random(0).sample(names, k=len(names) // 20):  # 5% of the labels made wrong
        label = name.rstrip("0123456789.jpg")
        wrong = random.Random(name).choice([c for c in classes if c != label])
        new = f"{wrong}{900 + len(flipped)}.jpg"  # the label lives in the file name
        (photos / name).rename(photos / new)
        flipped[new] = label
    before = sha256_tree(photos)

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoclass",
            "audit",
            photos,
            "--out",
            tmp_path / "audit",
            "--cache-dir",
            tmp_path / "cache",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert sha256_tree(photos) == before  # nothing in the data folder changed
    with open(tmp_path / "audit" / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "given_label", "suggested_label", "score", "flagged"]
    assert [float(r["score"]) for r in rows] == sorted(float(r["score"]) for r in rows)  # most suspicious first
    top = {r["path"] for r in rows[: len(rows) // 10]}
    found = sum(name in top for name in flipped)
    assert found >= 0.8 * len(flipped), (found, len(flipped))
    suggested = {r["path"]: r["suggested_label"] for r in rows}
    assert sum(suggested[n] == true for n, true in flipped.items()) >= 0.8 * len(flipped)  # and the right label
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert all(f"data-path='{name}'" in page for name in flipped if name in top)


@pytest.mark.trains
@pytest.mark.slow
def test_an_audit_written_into_a_run_is_linked_from_its_report(tmp_path):
    import photoclass

    run = tmp_path / "run"
    photoclass.train(
        EXAMPLES, out=run, model="efficientnet-lite0", cache_dir=tmp_path / "cache", verbose=False, progress=False
    )
    assert f"photoclass audit {EXAMPLES}" in (run / "report.html").read_text()  # how to make one
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoclass",
            "audit",
            EXAMPLES,
            "--out",
            run / "audit",
            "--model",
            "efficientnet-lite0",
            "--cache-dir",
            tmp_path / "cache",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = (run / "report.html").read_text()
    with open(run / "audit" / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    others = [r["path"] for r in rows if r["given_label"] != r["suggested_label"]]
    assert "href='audit/audit.html'" in report and (others[0] in report if others else "none of them" in report)
    assert not re.search(r"given <b>(\w+)</b>, looks like <b>\1</b>", report)


@pytest.mark.trains
@pytest.mark.slow
def test_image_arrays_are_audited_like_a_folder_with_their_pictures(tmp_path):
    np = pytest.importorskip("numpy")
    from sklearn.datasets import load_digits

    from photoclass import PhotoclassError
    from photoclass.workflows.audit import audit

    digits = load_digits()
    x, y = (digits.images[:240] * 255 / 16).round().astype("uint8"), digits.target[:240].copy()
    y[:6] = (y[:6] + 1) % 10  # six labels made wrong
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    result = audit(
        tmp_path / "digits.npz",
        out=tmp_path / "audit",
        model="efficientnet-lite0",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    top = [s["path"] for s in result.suspects[:24]]
    assert sum(f"digits.npz#x/{i}" in top for i in range(6)) >= 4  # array images named by file and index
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert page.count("<img") >= 24 and "photo not found" not in page  # the thumbnails come from the arrays
    with pytest.raises(PhotoclassError, match=r"nothing\.npz not found\. HINT"):
        audit(tmp_path / "nothing.npz", out=tmp_path / "audit2")


def sections(page: str) -> dict[str, str]:
    """The audit page's parts by their heading."""
    return {part.partition("</h2>")[0]: part.partition("</h2>")[2] for part in page.split("<h2>")[1:]}


def test_only_photos_the_model_labels_otherwise_stand_under_likely_mislabeled(tmp_path):
    from photoclass.evaluation.html_report import write_audit_page

    suspects = [
        {"path": "bees1.jpg", "given_label": "bees", "suggested_label": "wasps", "score": 0.08, "flagged": True},
        {"path": "bees2.jpg", "given_label": "bees", "suggested_label": "bees", "score": 0.96, "flagged": False},
    ]
    outliers = [
        {"path": "far.jpg", "label": "wasps", "outlier_score": 0.9},
        {"path": "near.jpg", "label": "bees", "outlier_score": 0.2},
    ]
    page = write_audit_page(tmp_path, suspects, [], outliers, tmp_path / "audit.html").read_text()
    parts = sections(page)
    mislabeled = next(v for k, v in parts.items() if k.startswith("Likely mislabeled"))
    agreed = next(v for k, v in parts.items() if "agrees with the given label" in k)
    assert "bees1.jpg" in mislabeled and "bees2.jpg" not in mislabeled
    assert "bees2.jpg" in agreed and "given <b>bees</b>, the model agrees (0.96)" in agreed
    assert "looks like <b>bees</b>" not in page
    typical = next(v for k, v in parts.items() if k.startswith("Least typical photos"))
    assert typical.index("far.jpg") < typical.index("near.jpg") and "outlier score 0.900" in typical


def test_outlier_scores_are_highest_farthest_from_the_rest_as_in_predict():
    np = pytest.importorskip("numpy")
    from photoclass.evaluation.label_errors import outlier_scores

    features = 5 + np.random.default_rng(0).normal(size=(40, 8))  # (N, D), all pointing one way
    features[7] = 0
    features[7, 0] = 10  # one photo unlike all the others
    scores = outlier_scores(features)
    assert int(scores.argmax()) == 7 and 0 <= scores.min() and scores.max() <= 1


def test_the_audit_summary_counts_the_outliers(tmp_path, monkeypatch, capsys):
    import photoclass.workflows.audit as workflow
    from photoclass.cli import main

    found = workflow.Audit(
        [{"path": "a.jpg", "given_label": "bees", "suggested_label": "wasps", "score": 0.1, "flagged": True}],
        [],
        [{"path": "a.jpg", "label": "bees", "outlier_score": 0.9}] * 3,
        tmp_path / "audit",
    )
    monkeypatch.setattr(workflow, "audit", lambda *args, **kwargs: found)
    assert main(["audit", str(tmp_path), "--out", str(tmp_path / "audit"), "--top", "0"]) == 0
    assert "the 3 least typical photos (outliers, highest outlier_score first)" in capsys.readouterr().out
