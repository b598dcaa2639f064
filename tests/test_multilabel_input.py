"""Multi-label input cases: one photo in several class folders (merged into one photo with all
their labels, or kept single-label when only a few copies straddle folders), copies that differ,
and bad label input (mixed separators, cells of separators only, a label matrix not 0/1), each
refused in one line naming the row or file and the fix."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

import photoclass
from photoclass.core.errors import PhotoclassError
from photoclass.data.summary import format_summary

from conftest import save, synthetic_photo

CLASSES = ("birds", "cats", "dogs")


def _prepare(data, tmp_path, **options):
    return photoclass.prepare(data, image_size=32, cache_dir=tmp_path / "cache", progress=False, **options)


def _folders(root, per_class: int):
    """`per_class` distinct photos in each class folder, named alike in every folder (img_0.jpg ...)."""
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            save(synthetic_photo(1000 * c + i, size=(40, 32), cls=c), root / name / f"img_{i}.jpg")
    return root


def _copy(root, source: str, folder: str) -> str:
    """A byte-identical copy of `source` in another class folder, under a name of its own."""
    name = f"{folder}/copy_of_{source.replace('/', '_')}"
    shutil.copy(root / source, root / name)
    return name


def _sets(data) -> dict[str, set[str]]:
    return {r.path: set(r.label.split(";")) - {""} for r in data.usable}


def test_task_multi_label_merges_a_photo_found_in_several_class_folders(tmp_path):
    root = _folders(tmp_path / "photos", 8)
    twice = [_copy(root, f"cats/img_{i}.jpg", "dogs") for i in range(3)]
    thrice = [_copy(root, "birds/img_0.jpg", "cats"), _copy(root, "birds/img_0.jpg", "dogs")]
    data = _prepare(root, tmp_path, task="multi-label")
    assert data.task == "multi-label" and data.classes == list(CLASSES)
    assert len(data) == 24  # 29 files, 4 photos found in several folders: 24 photos
    sets = _sets(data)
    assert all(sets[f"cats/img_{i}.jpg"] == {"cats", "dogs"} for i in range(3))
    assert sets["birds/img_0.jpg"] == {"birds", "cats", "dogs"}
    assert sets["birds/img_1.jpg"] == {"birds"} and sets["dogs/img_5.jpg"] == {"dogs"}
    merged = {r.path: r for r in data.rows if r.status == "merged"}
    assert set(merged) == {*twice, *thrice} and not data.skipped
    assert merged[thrice[0]].reason == "the same photo as birds/img_0.jpg, which carries its labels"
    assert data.summary["merged"] == 5 and data.summary["skipped"] == 0
    assert data.summary["classes"]["dogs"]["total"] == 8 + 4
    line = "merged 4 photos found in several class folders (9 copies) into one photo each with all their labels"
    assert f"NOTE: {line}" in format_summary(data.summary).splitlines()
    data.save(tmp_path / "out")
    with open(tmp_path / "out" / "manifest.csv", newline="") as f:
        written = {row["path"]: row for row in csv.DictReader(f)}
    assert (written[twice[0]]["label"], written[twice[0]]["status"], written[twice[0]]["split"]) == (
        "dogs",
        "merged",
        "",
    )
    assert (written["cats/img_0.jpg"]["label"], written["cats/img_0.jpg"]["status"]) == ("cats;dogs", "ok")


def test_task_auto_reads_class_folders_as_label_sets_when_many_photos_sit_in_several(tmp_path):
    root = _folders(tmp_path / "photos", 30)
    for i in range(12):  # 12 of 90 photos (13%) in two folders
        _copy(root, f"{CLASSES[i % 3]}/img_{i}.jpg", CLASSES[(i + 1) % 3])
    data = _prepare(root, tmp_path)
    assert data.task == "multi-label" and len(data) == 90 and data.labels.shape == (90, 3)
    assert int(data.labels.sum()) == 90 + 12
    note = next(n for n in data.summary["notes"] if "sit in several class folders" in n)
    assert note.startswith("12 of 90 photos (13%) sit in several class folders as byte-identical copies: read as")
    assert "HINT: pass --task single-label" in note
    forced = _prepare(root, tmp_path, task="single-label")
    assert forced.task == "single-label" and len(forced) == 102 and "merged" not in forced.summary


def test_task_auto_keeps_a_few_straddling_copies_single_label_as_before(tmp_path):
    root = _folders(tmp_path / "photos", 20)
    copies = [_copy(root, f"cats/img_{i}.jpg", "dogs") for i in range(3)]  # 3 of 60: a few stray copies
    data = _prepare(root, tmp_path)
    assert data.task == "single-label" and len(data) == 63 and "merged" not in data.summary
    assert not any("several class folders" in n for n in data.summary["notes"])
    forced = _prepare(root, tmp_path, task="single-label")
    assert forced.rows == data.rows  # the same manifest: labels, splits and groups
    by_path = {r.path: r for r in data.usable}
    for i, copy in enumerate(copies):  # each copy shares its original's group and split, as ever
        original = by_path[f"cats/img_{i}.jpg"]
        assert (by_path[copy].group, by_path[copy].split) == (original.group, original.split)
        assert (original.label, by_path[copy].label) == ("cats", "dogs")
    warning = next(line for line in format_summary(data.summary).splitlines() if "under different labels" in line)
    assert "WARNING: 3 groups hold the same photo" in warning and "pass --task multi-label" in warning


def test_weather_like_flat_folders_and_csvs_are_untouched(tmp_path):
    root = tmp_path / "flat"
    for i in range(12):
        save(synthetic_photo(i, size=(40, 32), cls=i % 2), root / f"{('cloudy', 'rain')[i % 2]}{i}.jpg")
    shutil.copy(root / "cloudy0.jpg", root / "rain99.jpg")  # a copy across labels by file name
    data = _prepare(root, tmp_path, task="multi-label")
    assert len(data) == 13 and "merged" not in data.summary  # only class folders are merged


def test_copies_under_one_name_that_differ_are_left_out_and_named(tmp_path):
    root = _folders(tmp_path / "photos", 6)  # img_0.jpg ... in every folder: different photos, kept
    photo = synthetic_photo(77, size=(40, 32), cls=1)
    save(photo, root / "cats" / "shared.jpg", quality=95)
    save(photo, root / "dogs" / "shared.jpg", quality=60)  # the same photo, re-encoded
    data = _prepare(root, tmp_path, task="multi-label")
    assert len(data) == 18 and {r.path for r in data.skipped} == {"cats/shared.jpg", "dogs/shared.jpg"}
    reasons = {r.path: r.reason for r in data.skipped}
    assert reasons["cats/shared.jpg"].startswith("differs from its copy dogs/shared.jpg (re-encoded or edited?)")
    note = next(n for n in data.summary["notes"] if n.startswith("left out 2 photos"))
    assert "(e.g. cats/shared.jpg and dogs/shared.jpg" in note
    assert note.endswith("HINT: make the copies identical, or rename one if they are different photos.")
    single = _prepare(root, tmp_path, task="single-label")
    assert len(single) == 20  # single-label: two photos in one duplicate group, as ever
    assert len({r.group for r in single.usable if r.path.endswith("shared.jpg")}) == 1


def test_split_folders_merge_copies_within_a_split_only(tmp_path):
    root = tmp_path / "photos"
    for split, offset in (("train", 0), ("test", 100)):
        for c, name in enumerate(CLASSES):
            for i in range(4):
                save(synthetic_photo(offset + 10 * c + i, size=(40, 32), cls=c), root / split / name / f"{i}.jpg")
    shutil.copy(root / "train/cats/0.jpg", root / "train/dogs/c0.jpg")
    shutil.copy(root / "train/cats/1.jpg", root / "test/dogs/c1.jpg")  # across splits: not one photo
    data = _prepare(root, tmp_path, task="multi-label")
    assert _sets(data)["train/cats/0.jpg"] == {"cats", "dogs"}
    assert [r.path for r in data.rows if r.status == "merged"] == ["train/dogs/c0.jpg"]
    assert _sets(data)["test/dogs/c1.jpg"] == {"dogs"} and _sets(data)["train/cats/1.jpg"] == {"cats"}


def test_a_label_too_rare_for_every_split_is_still_named_after_merging(tmp_path):
    root = _folders(tmp_path / "photos", 10)
    save(synthetic_photo(5000, size=(40, 32), cls=0), root / "rare" / "only.jpg")
    shutil.copy(root / "rare" / "only.jpg", root / "cats" / "only.jpg")
    data = _prepare(root, tmp_path, task="multi-label")
    assert _sets(data)["cats/only.jpg"] == {"cats", "rare"}
    note = next(n for n in data.summary["notes"] if "missing from a split" in n)
    assert "'rare' (1 group: none in" in note
    for j in range(3):  # the common labels reach every split
        assert set(data.splits[data.labels[:, j] > 0].tolist()) == {"train", "val", "test"}


def _csv(tmp_path, cells) -> str:
    for i in range(len(cells)):
        save(synthetic_photo(i, size=(40, 32), cls=i % 3), tmp_path / f"p{i}.jpg")
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *((f"p{i}.jpg", cell) for i, cell in enumerate(cells))])
    return table


@pytest.mark.parametrize(
    "cells, first, other",
    [
        (
            ["a;b", "b;c", "a", "a|c", "b"],
            r"labels.csv:2 \('a;b'\) parts its labels by ';'",
            r"labels.csv:5 \('a\|c'\)",
        ),
        (["a|b", "c|d", "a, c", "b"], r"labels.csv:2 \('a\|b'\) parts its labels by '\|'", r"labels.csv:4 \('a, c'\)"),
    ],
)
def test_label_cells_that_mix_separators_are_refused(tmp_path, cells, first, other):
    table = _csv(tmp_path, cells)
    with pytest.raises(PhotoclassError, match=rf"{first}, but .*{other} holds .*mix separators\. HINT: .*--label-sep"):
        _prepare(table, tmp_path)
    data = _prepare(table, tmp_path, label_sep=cells[0][1])  # said which: the others stay inside labels
    assert data.task == "multi-label"


@pytest.mark.parametrize("cell", [";;", " ; "])
def test_a_label_cell_of_separators_only_is_refused_but_an_empty_one_means_none(tmp_path, cell):
    table = _csv(tmp_path, ["a;b", "b;c", "", cell, "a"])
    with pytest.raises(PhotoclassError, match=r"labels.csv:5: the label cell .* names no label, only separators"):
        _prepare(table, tmp_path)
    table = _csv(tmp_path, ["a;b", "b;c", "", "c", "a"])
    assert _sets(_prepare(table, tmp_path))["p2.jpg"] == set()


def test_a_json_line_of_blank_labels_is_refused(tmp_path):
    save(synthetic_photo(0, size=(40, 32)), tmp_path / "p0.jpg")
    listing = tmp_path / "labels.jsonl"
    listing.write_text(json.dumps({"path": "p0.jpg", "labels": ["", " "]}) + "\n")
    with pytest.raises(PhotoclassError, match=r"labels.jsonl:1: labels \['', ' '\] name no label.*HINT: write"):
        _prepare(listing, tmp_path)


@pytest.mark.parametrize("value", [0.5, 2, -1])
def test_a_label_matrix_that_is_not_zeros_and_ones_is_refused(tmp_path, value):
    x = np.stack([np.asarray(synthetic_photo(i, size=(32, 32))) for i in range(6)])
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]], dtype=float)
    y[3, 2] = value
    np.savez(tmp_path / "data.npz", x=x, y=y)
    with pytest.raises(
        PhotoclassError,
        match=rf"data.npz:x: its labels form a \(6, 3\) matrix but hold {float(value)!r} at row 3, column 2;.*HINT",
    ):
        _prepare(tmp_path / "data.npz", tmp_path)
