"""`photoclass audit`: likely mislabeled photos found with cleanlab, the folder left as it was."""
import csv
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import sha256_tree

pytestmark = [pytest.mark.trains, pytest.mark.slow]  # it fits classifiers on pretrained features
pytest.importorskip("cleanlab", reason="the audit extra is not installed")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"


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

    result = subprocess.run([sys.executable, "-m", "photoclass", "audit", photos, "--out", tmp_path / "audit",
                             "--cache-dir", tmp_path / "cache"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert sha256_tree(photos) == before  # nothing in the data folder changed
    with open(tmp_path / "audit" / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "given_label", "suggested_label", "score", "flagged"]
    assert [float(r["score"]) for r in rows] == sorted(float(r["score"]) for r in rows)  # most suspicious first
    top = {r["path"] for r in rows[:len(rows) // 10]}
    found = sum(name in top for name in flipped)
    assert found >= 0.8 * len(flipped), (found, len(flipped))
    suggested = {r["path"]: r["suggested_label"] for r in rows}
    assert sum(suggested[n] == true for n, true in flipped.items()) >= 0.8 * len(flipped)  # and the right label
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert all(f"data-path='{name}'" in page for name in flipped if name in top)


def test_an_audit_written_into_a_run_is_linked_from_its_report(tmp_path):
    import photoclass

    run = tmp_path / "run"
    photoclass.train(EXAMPLES, out=run, model="efficientnet-lite0", cache_dir=tmp_path / "cache",
                     verbose=False, progress=False)
    assert f"photoclass audit {EXAMPLES}" in (run / "report.html").read_text()  # how to make one
    result = subprocess.run([sys.executable, "-m", "photoclass", "audit", EXAMPLES, "--out", run / "audit",
                             "--model", "efficientnet-lite0", "--cache-dir", tmp_path / "cache"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = (run / "report.html").read_text()
    with open(run / "audit" / "label_issues.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert "href='audit/audit.html'" in report and first["path"] in report


def test_image_arrays_are_audited_like_a_folder_with_their_pictures(tmp_path):
    np = pytest.importorskip("numpy")
    from sklearn.datasets import load_digits

    from photoclass import PhotoclassError
    from photoclass.workflows.audit import audit

    digits = load_digits()
    x, y = (digits.images[:240] * 255 / 16).round().astype("uint8"), digits.target[:240].copy()
    y[:6] = (y[:6] + 1) % 10  # six labels made wrong
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    result = audit(tmp_path / "digits.npz", out=tmp_path / "audit", model="efficientnet-lite0",
                   cache_dir=tmp_path / "cache", progress=False)
    top = [s["path"] for s in result.suspects[:24]]
    assert sum(f"digits.npz#x/{i}" in top for i in range(6)) >= 4  # array images named by file and index
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert page.count("<img") >= 24 and "photo not found" not in page  # the thumbnails come from the arrays
    with pytest.raises(PhotoclassError, match=r"nothing\.npz not found\. HINT"):
        audit(tmp_path / "nothing.npz", out=tmp_path / "audit2")
