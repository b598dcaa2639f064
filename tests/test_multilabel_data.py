"""Multi-label data: label sets from CSV cells, JSON lines and multi-hot arrays; the task decided
from the data (and said why) unless `task` names it; splits by iterative stratification over
duplicate groups."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

import photoclass
from photoclass.core.errors import PhotoclassError
from photoclass.data.split import iterative_parts
from photoclass.data.summary import format_summary

from conftest import save, synthetic_photo

LABELS = ("agriculture", "clear", "cloudy", "haze", "habitation", "primary", "road", "water", "bare")


def _photos(root, count: int) -> list[str]:
    """`count` distinct small photos in root/photos; their paths relative to root."""
    names = [f"photos/p{i:03d}.jpg" for i in range(count)]
    for i, name in enumerate(names):
        save(synthetic_photo(i, size=(40, 32), cls=i % 3), root / name)
    return names


def _label_sets(count: int, seed: int = 0, labels=LABELS) -> list[tuple[str, ...]]:
    """Random sets of 0 to 3 labels, every label in some."""
    rng = np.random.default_rng(seed)
    sets = [
        tuple(labels[j] for j in sorted(rng.choice(len(labels), rng.integers(1, 4), replace=False)))
        for _ in range(count)
    ]
    sets[:3] = [(), ("clear", "primary"), ("cloudy",)]
    return sets


def _write_csv(root, names, cells, extra_columns=None) -> str:
    table = root / "labels.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", *(extra_columns or {})])
        for i, (name, cell) in enumerate(zip(names, cells)):
            writer.writerow([name, cell, *(values[i] for values in (extra_columns or {}).values())])
    return table


def _prepare(data, tmp_path, **options):
    return photoclass.prepare(data, image_size=32, cache_dir=tmp_path / "cache", progress=False, **options)


def _sets_of(data) -> dict[str, set[str]]:
    return {r.path: {data.classes[j] for j in np.flatnonzero(row)} for r, row in zip(data.usable, data.labels)}


def test_a_csv_of_space_separated_labels_is_multi_label(tmp_path):
    names = _photos(tmp_path, 60)
    sets = _label_sets(60)
    data = _prepare(_write_csv(tmp_path, names, [" ".join(s) for s in sets]), tmp_path)
    assert data.task == "multi-label" and data.summary["task"] == "multi-label"
    assert data.classes == sorted(LABELS)
    assert data.labels.shape == (60, 9) and data.labels.dtype == np.uint8
    assert _sets_of(data) == {n: set(s) for n, s in zip(names, sets)}
    assert len(data) == 60 and not data.skipped  # the empty cell: a negative for every label, not skipped
    first = next(r for r in data.usable if r.path == names[1])
    assert first.label == "clear;primary" and next(r for r in data.usable if r.path == names[0]).label == ""
    assert data.summary["labels_per_photo"] == pytest.approx(np.mean([len(s) for s in sets]), abs=0.01)
    assert data.summary["photos_without_labels"] == 1
    assert data.summary["classes"]["clear"]["total"] == sum("clear" in s for s in sets)
    assert any("parted by spaces (multi-label)" in note for note in data.summary["notes"])


@pytest.mark.parametrize("sep", [";", "|"])
def test_labels_parted_by_a_semicolon_or_a_bar(tmp_path, sep):
    names = _photos(tmp_path, 12)
    sets = [("a b", "c"), ("c",), (), ("a b",), ("c", "d"), ("d",)] * 2  # "a b": a label with a space
    data = _prepare(_write_csv(tmp_path, names, [f" {sep} ".join(s) for s in sets]), tmp_path)
    assert data.task == "multi-label" and data.classes == ["a b", "c", "d"]
    assert _sets_of(data) == {n: set(s) for n, s in zip(names, sets)}
    assert any(f"hold {sep!r}" in note for note in data.summary["notes"])


def test_a_single_label_csv_of_multi_word_names_is_not_split(tmp_path):
    names = _photos(tmp_path, 16)
    cells = ["red fox", "grey wolf", "arctic fox", "brown bear"] * 4
    data = _prepare(_write_csv(tmp_path, names, cells), tmp_path)
    assert data.task == "single-label" and "task" not in data.summary
    assert data.classes == ["arctic fox", "brown bear", "grey wolf", "red fox"]
    assert data.labels.dtype == np.int64 and data.labels.ndim == 1
    assert any("read as one label each (single-label)" in note for note in data.summary["notes"])


def test_task_single_label_reads_each_cell_whole(tmp_path):
    names = _photos(tmp_path, 30)
    sets = _label_sets(30)
    data = _prepare(_write_csv(tmp_path, names, [" ".join(s) for s in sets]), tmp_path, task="single-label")
    assert data.task == "single-label" and "task" not in data.summary
    assert set(data.classes) == {" ".join(s) for s in sets if s}
    assert [r.reason for r in data.skipped] == ["empty 'label' in the CSV, row 2"]  # skipped, as ever


def test_a_label_holding_a_semicolon_is_refused_in_multi_label(tmp_path):
    names = _photos(tmp_path, 4)
    table = _write_csv(tmp_path, names, ["a|b;c", "a", "b", "a|b"])
    with pytest.raises(PhotoclassError, match=r"Label 'b;c' of photos/p000.jpg holds ';'.*HINT: rename the label"):
        _prepare(table, tmp_path, label_sep="|")


def test_json_lines_of_label_lists(tmp_path):
    names = _photos(tmp_path, 12)
    sets = [["cat", "dog"], ["cat"], [], ["dog"], ["bird", "cat"], ["bird"]] * 2
    splits = ["test", "val"] + [""] * 10
    lines = [json.dumps({"path": n, "labels": s, "split": sp}) for n, s, sp in zip(names, sets, splits)]
    listing = tmp_path / "labels.jsonl"
    listing.write_text("\n".join(lines) + "\n")
    data = _prepare(listing, tmp_path)
    assert data.summary["layout"] == "jsonl" and data.task == "multi-label"
    assert data.classes == ["bird", "cat", "dog"]
    assert _sets_of(data) == {n: set(s) for n, s in zip(names, sets)}
    split_of = {r.path: r.split for r in data.usable}
    assert split_of[names[0]] == "test" and split_of[names[1]] == "val"


def test_json_lines_of_one_label_each_are_single_label(tmp_path):
    names = _photos(tmp_path, 6)
    listing = tmp_path / "labels.jsonl"
    listing.write_text("".join(json.dumps({"path": n, "labels": [c]}) + "\n" for n, c in zip(names, "abcabc")))
    data = _prepare(listing, tmp_path)
    assert data.task == "single-label" and data.classes == ["a", "b", "c"]
    assert any("exactly one label" in note for note in data.summary["notes"])
    forced = _prepare(listing, tmp_path, task="multi-label")
    assert forced.task == "multi-label" and forced.labels.shape == (6, 3)


def _images(count: int) -> np.ndarray:
    return np.stack([np.asarray(synthetic_photo(i, size=(32, 32), cls=i % 3)) for i in range(count)])


def test_npz_with_a_multi_hot_y_is_multi_label(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random((30, 4)) < 0.4).astype(np.uint8)
    y[0] = 0
    y[1] = [1, 1, 0, 0]
    np.savez(tmp_path / "data.npz", x=_images(30), y=y)
    data = _prepare(tmp_path / "data.npz", tmp_path)
    assert data.task == "multi-label" and data.classes == ["0", "1", "2", "3"]
    order = [int(r.path.split("#")[-1].split("/")[-1]) for r in data.usable]
    assert np.array_equal(data.labels, y[order])

    np.savez(tmp_path / "named.npz", x=_images(30), y=y, label_names=np.array(["a", "b", "c", "d"]))
    named = _prepare(tmp_path / "named.npz", tmp_path)
    assert named.classes == ["a", "b", "c", "d"] and np.array_equal(named.labels, y[order])
    with pytest.raises(PhotoclassError, match="multi-hot .* task='single-label'"):
        _prepare(tmp_path / "named.npz", tmp_path, task="single-label")


def test_a_one_hot_y_stays_single_label_unless_task_says_multi_label(tmp_path):
    y = np.eye(3, dtype=np.uint8)[np.arange(30) % 3]
    np.savez(tmp_path / "onehot.npz", x=_images(30), y=y)
    data = _prepare(tmp_path / "onehot.npz", tmp_path)
    assert data.task == "single-label" and data.labels.ndim == 1 and "task" not in data.summary
    forced = _prepare(tmp_path / "onehot.npz", tmp_path, task="multi-label")
    assert forced.task == "multi-label" and np.array_equal(forced.labels.sum(1), np.ones(30))


def test_the_split_keeps_duplicate_groups_whole_and_every_label_in_every_split(tmp_path):
    names = _photos(tmp_path, 60)
    sets = _label_sets(60, seed=3)
    for i in range(8):  # byte-identical copies: one group each with its original
        shutil.copy(tmp_path / names[i], tmp_path / f"photos/copy{i}.jpg")
    names += [f"photos/copy{i}.jpg" for i in range(8)]
    sets += sets[:8]
    table = _write_csv(tmp_path, names, [" ".join(s) for s in sets])
    data = _prepare(table, tmp_path)
    for group in set(data.groups.tolist()):
        assert len(set(data.splits[data.groups == group].tolist())) == 1
    for j, label in enumerate(data.classes):
        held = data.labels[:, j] > 0
        if len(set(data.groups[held].tolist())) >= 3:
            assert {s for s in data.splits[held]} == {"train", "val", "test"}, label
    again = _prepare(table, tmp_path)
    assert np.array_equal(again.splits, data.splits)  # same seed, same split


def test_iterative_parts_on_groups():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 6)) < [0.5, 0.3, 0.1, 0.05, 0.02, 0.008]).astype(np.uint8)  # (N, L)
    groups = rng.integers(0, 300, 400)  # some groups of 2 or 3 photos
    parts = iterative_parts(labels, groups, np.array([0.7, 0.15, 0.15]), seed=4)
    assert np.array_equal(parts, iterative_parts(labels, groups, np.array([0.7, 0.15, 0.15]), seed=4))
    for g in np.unique(groups):
        assert len(np.unique(parts[groups == g])) == 1
    for j in range(labels.shape[1]):
        held = labels[:, j] > 0
        if len(np.unique(groups[held])) >= 3:
            assert set(parts[held].tolist()) == {0, 1, 2}, j
    share = np.bincount(parts, minlength=3) / len(parts)
    assert share == pytest.approx([0.7, 0.15, 0.15], abs=0.05)
    common = labels[:, 0] > 0
    assert np.mean(parts[common] == 0) == pytest.approx(0.7, abs=0.05)  # stratified by label too


def test_a_label_too_rare_for_every_split_is_named_in_a_note(tmp_path):
    names = _photos(tmp_path, 20)
    cells = ["a b", "a", "b", "a c", "b c", "c"] * 3 + ["a rare", "b"]
    data = _prepare(_write_csv(tmp_path, names, cells), tmp_path, label_sep=" ")
    notes = [n for n in data.summary["notes"] if "missing from a split" in n]
    assert len(notes) == 1 and "'rare' (1 group: none in" in notes[0]


def test_the_summary_says_the_task_in_one_line(tmp_path):
    names = _photos(tmp_path, 60)
    sets = _label_sets(60)
    data = _prepare(_write_csv(tmp_path, names, [" ".join(s) for s in sets]), tmp_path)
    text = format_summary(data.summary)
    per_photo = np.mean([len(s) for s in sets])
    assert f"task: multi-label, 9 labels, {per_photo:.1f} labels a photo, 1 with none" in text.splitlines()
    assert "  label   " in text
