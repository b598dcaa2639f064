import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import photoclass
from photoclass import PhotoclassError
from photoclass.data.dataset import MANIFEST_COLUMNS

from conftest import make_corpus, make_flat, make_folders, save, sha256_tree, synthetic_photo


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_cli(*args, cwd=None, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "photoclass.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_prepare_writes_the_manifest_and_returns_the_dataset(flat_folder, tmp_path, cache_dir):
    data = photoclass.prepare(flat_folder, out=tmp_path / "out", cache_dir=cache_dir, progress=False)
    rows = read_rows(tmp_path / "out" / "manifest.csv")
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert len(rows) == 18 and all(r["status"] == "ok" for r in rows)
    assert data.classes == ["cloudy", "rain", "shine"]
    assert data.images.shape == (18, 224, 224, 3)
    assert sorted(set(data.splits.tolist())) == ["test", "train", "val"]
    # pixels line up with rows: the cached image is the decoded file
    i = next(i for i, r in enumerate(data.usable) if r.path == "rain3.jpg")
    direct = photoclass.decode_photo(flat_folder / "rain3.jpg", size=224).to_array()
    assert np.array_equal(data.images[i], direct) and data.exact_images() is data.images
    assert data.labels[i] == data.classes.index("rain")


def test_bad_files_are_skipped_with_reasons_and_sources_never_change(tmp_path, cache_dir):
    root = make_flat(tmp_path / "d", per_class=4, classes=("cloudy", "rain"))
    expected = make_corpus(root)
    before = sha256_tree(root)
    data = photoclass.prepare(root, out=tmp_path / "out", cache_dir=cache_dir, progress=False)
    assert sha256_tree(root) == before
    rows = {r["path"]: r for r in read_rows(tmp_path / "out" / "manifest.csv")}
    for name, (status, reason) in expected.items():
        assert rows[name]["status"] == status, name
        assert reason in rows[name]["reason"], (name, rows[name]["reason"])
        if status == "skipped":
            assert rows[name]["split"] == "" and rows[name]["reason"]
    assert data.summary["skipped"] == sum(s == "skipped" for s, _ in expected.values())
    assert "odd" in data.classes  # the readable odd files form a class of their own here


def test_same_seed_gives_the_same_manifest_byte_for_byte(flat_folder, tmp_path, cache_dir):
    photoclass.prepare(flat_folder, out=tmp_path / "a", cache_dir=cache_dir, seed=5, progress=False)
    photoclass.prepare(flat_folder, out=tmp_path / "b", cache_dir=tmp_path / "other-cache", seed=5, progress=False)
    photoclass.prepare(flat_folder, out=tmp_path / "c", cache_dir=cache_dir, seed=6, progress=False)
    a, b, c = ((tmp_path / x / "manifest.csv").read_bytes() for x in "abc")
    assert a == b
    assert a != c


def test_the_cache_is_reused_whatever_the_output_folder(flat_folder, tmp_path, cache_dir):
    first = photoclass.prepare(flat_folder, out=tmp_path / "a", cache_dir=cache_dir, progress=False)
    second = photoclass.prepare(flat_folder, out=tmp_path / "b", cache_dir=cache_dir, progress=False)
    assert first.summary["cache"]["decoded"] == 18
    assert second.summary["cache"]["decoded"] == 0 and second.summary["cache"]["reused"] == 18
    assert np.array_equal(first.images[:], second.images[:])
    # a changed file is decoded again; a new image size is a new cache entry
    save(synthetic_photo(999), flat_folder / "rain1.jpg")
    third = photoclass.prepare(flat_folder, cache_dir=cache_dir, progress=False)
    assert third.summary["cache"]["decoded"] == 1
    small = photoclass.prepare(flat_folder, cache_dir=cache_dir, image_size=64, progress=False)
    assert small.images.shape == (18, 64, 64, 3) and small.summary["cache"]["decoded"] == 18


def test_cache_lives_under_xdg_cache_home_by_default(flat_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("PHOTOCLASS_CACHE")  # the suite's own cache, set in conftest
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = photoclass.prepare(flat_folder, progress=False)
    assert data.summary["cache"]["dir"] == str(tmp_path / "xdg" / "photoclass")
    assert any((tmp_path / "xdg" / "photoclass" / "packs").rglob("*.u8"))


def test_duplicates_never_span_two_splits(tmp_path, cache_dir):
    root = make_flat(tmp_path / "d", per_class=20, classes=("cloudy", "rain"))
    for i in range(1, 11):  # byte-identical copies under other names
        (root / f"cloudy{100 + i}.jpg").write_bytes((root / f"cloudy{i}.jpg").read_bytes())
    data = photoclass.prepare(root, cache_dir=cache_dir, progress=False)
    assert data.summary["duplicates"]["byte_identical_groups"] == 10
    for g in np.unique(data.groups):
        assert len(set(data.splits[data.groups == g].tolist())) == 1


def test_given_train_and_val_make_val_the_test_split(tmp_path, cache_dir):
    make_folders(tmp_path / "d" / "train", per_class=10)
    make_folders(tmp_path / "d" / "val", per_class=3)
    data = photoclass.prepare(tmp_path / "d", cache_dir=cache_dir, progress=False)
    by_path = {r.path: r.split for r in data.usable}
    assert {s for p, s in by_path.items() if p.startswith("val/")} == {"test"}
    assert {s for p, s in by_path.items() if p.startswith("train/")} == {"train", "val"}


def test_out_inside_the_photo_folder_is_refused(flat_folder):
    with pytest.raises(PhotoclassError, match="is inside the data folder"):
        photoclass.prepare(flat_folder, out=flat_folder / "prepared")


def test_one_class_and_no_photos_are_clear_errors(tmp_path, cache_dir):
    only = make_flat(tmp_path / "one", per_class=3, classes=("cloudy",))
    with pytest.raises(PhotoclassError, match="at least 2 classes.*only one class: 'cloudy' \\(3 photos\\)"):
        photoclass.prepare(only, cache_dir=cache_dir, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhotoclassError, match=r"No images found in .*empty \(layout .flat.\). Allowed formats: JPEG"):
        photoclass.prepare(tmp_path / "empty", cache_dir=cache_dir, progress=False)


def test_unknown_option_lists_the_known_ones(flat_folder):
    with pytest.raises(PhotoclassError, match=r"Unknown option\(s\).*\['imgsize'\].*image_size"):
        photoclass.prepare(flat_folder, imgsize=128)
    with pytest.raises(PhotoclassError, match=r"`test_size` must be a fraction .* Received: test_size=1.5"):
        photoclass.prepare(flat_folder, test_size=1.5)


def test_cli_prepare_json_summary(flat_folder, tmp_path, cache_dir):
    result = run_cli("prepare", flat_folder, "--out", tmp_path / "out", "--cache-dir", cache_dir, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["usable"] == 18 and summary["skipped"] == 0
    assert summary["classes"]["rain"]["total"] == 6
    assert Path(summary["manifest"]).is_file()


def test_cli_prints_a_readable_summary(flat_folder, tmp_path, cache_dir):
    result = run_cli("prepare", flat_folder, "--cache-dir", cache_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "18 usable photos in 3 classes" in result.stdout
    assert (tmp_path / "prepared" / "flat" / "manifest.csv").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["prepare", "/no/such/folder"], "Folder not found: /no/such/folder"),
        (
            ["prepare", "{data}", "--image-size", "5"],
            "--image-size must be an integer from 16 to 1024. Received: --image-size=5",
        ),
        (["prepare", "{data}", "--label-regex", "(["], "--label-regex is not a valid regular expression"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(flat_folder, tmp_path, args, message):
    result = run_cli(*[a.format(data=flat_folder) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr


def test_the_cache_goes_where_photoclass_cache_says_and_the_suite_never_uses_the_users(tmp_path, monkeypatch):
    from photoclass.data.cache import default_cache_dir

    from conftest import TEST_CACHE

    assert default_cache_dir() == TEST_CACHE and Path.home() / ".cache" not in TEST_CACHE.parents
    monkeypatch.setenv("PHOTOCLASS_CACHE", str(tmp_path / "mine"))
    photoclass.prepare(make_flat(tmp_path / "photos"), out=tmp_path / "prepared", progress=False)
    assert any((tmp_path / "mine").iterdir())
