import csv
import io
import json
import os
import subprocess
import sys

import pytest

import photoclass
from photoclass import PhotoclassError

from conftest import save, sha256_tree, synthetic_photo, train_tiny_run

pytestmark = pytest.mark.trains  # each test trains at least one small model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("predict"))


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "new"
    for i in range(3):
        save(synthetic_photo(700 + i, cls=i), root / f"photo{i}.jpg")
    save(synthetic_photo(710), root / "nested" / "deep.png", fmt="PNG")
    (root / "broken.jpg").write_bytes(b"not a photo at all")
    (root / ".hidden.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("hello")
    return root


def predict_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "photoclass.cli", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_folders_files_and_globs_are_predicted_and_bad_files_reported(run, photos):
    predictions = photoclass.predict(run, [photos, photos / "photo0.jpg", str(photos / "*.jpg")], top_k=2)
    paths = [os.path.relpath(p.path, photos) for p in predictions]
    assert paths == ["broken.jpg", "nested/deep.png", "photo0.jpg", "photo1.jpg", "photo2.jpg"]
    broken = predictions[0]
    assert broken.error and "not an image" in broken.error and broken.top == []
    for p in predictions[1:]:
        assert p.label in ("cloudy", "rain", "shine") and len(p.top) == 2
        assert p.top[0][1] >= p.top[1][1] and 0 < p.confidence <= 1


def test_missing_paths_are_one_line_errors(run, tmp_path):
    with pytest.raises(PhotoclassError, match="No such file or folder: .*nothing-here"):
        photoclass.predict(run, tmp_path / "nothing-here")
    result = predict_cli(run, tmp_path / "nothing-here")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_json_and_csv_formats(run, photos):
    out = predict_cli(run, photos, "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 5 and "error" in rows[0] and rows[1]["top"][0]["label"] == rows[1]["label"]
    out = predict_cli(run, photos, "--format", "csv", "--top-k", "3")
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["path"].endswith("photo1.jpg") for r in table].count(True) == 1
    assert all(len(r["top"].split(";")) == 3 for r in table if not r["error"])


def test_sort_into_copies_without_moving_or_overwriting(run, photos, tmp_path):
    before = sha256_tree(photos)
    out = tmp_path / "sorted"
    for label in ("cloudy", "rain", "shine"):  # photo0.jpg is taken wherever it lands
        (out / label).mkdir(parents=True)
        (out / label / "photo0.jpg").write_bytes(b"someone else's file")
    result = predict_cli(run, photos, "--sort-into", out)
    assert result.returncode == 0, result.stderr
    assert sha256_tree(photos) == before  # the sources are untouched
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(copied) == 7  # four photos plus the three files that were already there
    assert all(
        (out / label / "photo0.jpg").read_bytes() == b"someone else's file" for label in ("cloudy", "rain", "shine")
    )
    renamed = [c for c in copied if c.endswith("photo0 (1).jpg")]
    assert len(renamed) == 1 and (out / renamed[0]).read_bytes() == (photos / "photo0.jpg").read_bytes()
    assert "copied 4 photos" in result.stderr


def test_low_confidence_goes_to_unsure(run, photos, tmp_path):
    result = predict_cli(run, photos, "--sort-into", tmp_path / "s", "--min-confidence", "1", "--no-unknown")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "s" / "_unsure").iterdir()) == [
        "deep.png",
        "photo0.jpg",
        "photo1.jpg",
        "photo2.jpg",
    ]  # (with the check, "unknown" goes first)


def test_sorting_keeps_every_class_folder_inside_the_sorting_folder(tmp_path):
    from photoclass.inference.predictor import Prediction
    from photoclass.inference.sort import sort_into

    photo = tmp_path / "photos" / "photo.jpg"
    save(synthetic_photo(0), photo)
    labels = ["../../escaped", "/tmp/absolute", ".", "", "_unsure", "a\\b", "x" * 300, "cat"]
    out = tmp_path / "a" / "sorted"
    counts = sort_into([Prediction(str(photo), top=[(label, 0.9)]) for label in labels], out, min_confidence=0.5)
    made = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != photo)
    assert len(made) == len(labels) and all(p.parent.parent == out for p in made)  # one folder down, no further
    assert "_unsure" not in counts and "cat" in counts and "class _unsure" in counts
    assert not (tmp_path / "escaped").exists() and not any(p.parent == out for p in made)
