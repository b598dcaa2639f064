"""Corrections: the file a review writes, read back and laid over the labels by prepare and train."""

import csv
import shutil
import subprocess
import sys

import pytest

import photoclass
from conftest import make_flat, sha256_tree, synthetic_photo, save
from photoclass.core.errors import PhotoclassError
from photoclass.data.corrections import COLUMNS, CorrectionsLog, file_sha256, read_corrections

HEADER = ",".join(COLUMNS) + "\n"


def write(path, *rows, header=HEADER):
    path.write_text(header + "".join(",".join(r) + "\n" for r in rows))
    return path


def row(sha, action, new_label="", path="p.jpg", old="cloudy"):
    return (sha, path, old, action, new_label, "2026-12-07T00:00:00+00:00")


def prepare(data, cache, **options):
    return photoclass.prepare(data, cache_dir=cache, image_size=32, progress=False, **options)


def test_the_log_writes_each_action_at_once_and_undo_takes_the_last_back(tmp_path):
    path = tmp_path / "review" / "corrections.csv"
    log = CorrectionsLog(path)
    log.append(sha256="a" * 64, path="x/cloudy1.jpg", old_label="cloudy", action="relabel", new_label="rain")
    log.append(sha256="b" * 64, path="x/cloudy2.jpg", old_label="cloudy", action="drop")
    rows = list(csv.reader(path.open()))
    assert rows[0] == list(COLUMNS) and [r[3] for r in rows[1:]] == ["relabel", "drop"]
    assert log.undo().action == "drop"
    again = CorrectionsLog(path)  # a new review of the same folder resumes from the file
    assert [c.action for c in again.rows] == ["relabel"] and again.latest()["a" * 64].new_label == "rain"
    with pytest.raises(PhotoclassError, match="relabel to an empty name"):
        log.append(sha256="c" * 64, path="y.jpg", old_label="rain", action="relabel", new_label="  ")


def test_the_last_correction_of_a_photo_wins(tmp_path):
    f = write(tmp_path / "c.csv", row("a" * 64, "relabel", "rain"), row("a" * 64, "relabel", "shine"))
    assert read_corrections([f])["a" * 64].new_label == "shine"


@pytest.mark.parametrize(
    "header, rows, message",
    [
        ("path,label\n", [], "c.csv:1: the header is 'path,label'"),
        (HEADER, [row("a" * 64, "rename", "rain")], "c.csv:2: unknown action 'rename'. HINT: use one of keep"),
        (HEADER, [row("a" * 64, "relabel", "")], "c.csv:2: relabel to an empty name"),
        (HEADER, [row("abc", "drop")], "c.csv:2: sha256 'abc' is not a SHA-256"),
        (HEADER, [("a" * 64, "drop")], "c.csv:2: 2 cells, not 6"),
    ],
)
def test_a_bad_corrections_file_is_one_line_naming_the_row(tmp_path, header, rows, message):
    f = write(tmp_path / "c.csv", *rows, header=header)
    with pytest.raises(PhotoclassError) as e:
        read_corrections([f])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_two_files_that_disagree_are_refused_naming_both_rows(tmp_path):
    a = write(tmp_path / "a.csv", row("a" * 64, "relabel", "rain"))
    b = write(tmp_path / "b.csv", row("e" * 64, "drop"), row("a" * 64, "drop"))
    with pytest.raises(PhotoclassError, match=r"a.csv:2 says relabel to 'rain' but .*b.csv:3 says drop"):
        read_corrections([a, b])
    same = write(tmp_path / "same.csv", row("a" * 64, "relabel", "rain"))
    assert len(read_corrections([a, same])) == 1  # agreeing files are fine


@pytest.fixture
def data(tmp_path):
    return make_flat(tmp_path / "photos", per_class=8)


def test_corrections_relabel_drop_and_mark_outsiders_without_moving_other_photos(tmp_path, data, cache_dir):
    before = sha256_tree(data)
    plain = prepare(data, cache_dir)
    photo = {r.path: r for r in plain.rows}
    test_photo = next(r.path for r in plain.usable if r.split == "test" and r.label == "cloudy")
    f = write(
        tmp_path / "c.csv",
        row(file_sha256(data / "cloudy1.jpg"), "relabel", "rain"),
        row(file_sha256(data / test_photo), "relabel", "shine"),
        row(file_sha256(data / "rain2.jpg"), "drop"),
        row(file_sha256(data / "shine3.jpg"), "outsider"),
        row(file_sha256(data / "shine4.jpg"), "keep"),
        row("f" * 64, "drop", path="gone.jpg"),
    )
    fixed = prepare(data, cache_dir, corrections=[str(f)])
    rows = {r.path: r for r in fixed.rows}
    assert rows["cloudy1.jpg"].label == "rain" and "relabel cloudy -> rain" in rows["cloudy1.jpg"].reason
    assert rows[test_photo].label == "shine" and rows[test_photo].split == "test"
    assert rows["rain2.jpg"].status == "dropped" and rows["shine3.jpg"].status == "outsider"
    usable = {r.path for r in fixed.usable}
    assert "rain2.jpg" not in usable and "shine3.jpg" not in usable and len(fixed) == len(plain) - 2
    assert all(rows[p].split == photo[p].split for p in photo)  # no photo changed split
    c = fixed.summary["corrections"]
    assert c["applied"] == {"keep": 1, "relabel": 2, "drop": 1, "outsider": 1}
    assert [u["path"] for u in c["unmatched"]] == ["gone.jpg"]
    assert sha256_tree(data) == before  # the photos are never touched


def test_a_renamed_or_moved_photo_still_matches_by_its_bytes(tmp_path, data, cache_dir):
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    (moved / "cloudy1.jpg").rename(moved / "cloudy99.jpg")
    f = write(tmp_path / "c.csv", row(file_sha256(data / "cloudy1.jpg"), "relabel", "shine", path="cloudy1.jpg"))
    rows = {r.path: r for r in prepare(moved, cache_dir, corrections=str(f)).rows}
    assert rows["cloudy99.jpg"].label == "shine"


def test_label_sets_take_the_whole_new_set(tmp_path, cache_dir):
    folder = tmp_path / "sets"
    lines = ["path,label"]
    for i in range(24):
        name = f"p{i}.jpg"
        save(synthetic_photo(i, cls=i % 3), folder / name)
        lines.append(f"{name},{['sky;sea', 'sea;sand', 'sky;sand'][i % 3]}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    f = write(tmp_path / "c.csv", row(file_sha256(folder / "p0.jpg"), "relabel", "sand sky  sea", old="sea sky"))
    fixed = prepare(folder / "labels.csv", cache_dir, corrections=str(f))
    assert {r.path: r.label for r in fixed.rows}["p0.jpg"] == "sand;sea;sky"


def test_the_cli_says_a_bad_corrections_file_in_one_line(tmp_path, data, cache_dir):
    bad = write(tmp_path / "c.csv", row("a" * 64, "rename"))
    done = subprocess.run(
        [sys.executable, "-m", "photoclass", "prepare", str(data), "--corrections", str(bad)],
        capture_output=True,
        text=True,
        env={"PHOTOCLASS_CACHE": str(cache_dir), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0 and "unknown action 'rename'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.trains
def test_train_uses_corrections_outsiders_and_compares_to_the_run_before(tmp_path, data, cache_dir):
    options = dict(model="compact-cnn", image_size=32, epochs=2, threads=1, cache_dir=cache_dir, track=False)
    options.update(verbose=False, progress=False)
    photos = sha256_tree(data)
    before = photoclass.train(data, out=tmp_path / "before", **options).run
    outsiders = tmp_path / "outsiders"
    for i in range(6):  # unlike every class: grey noise
        save(synthetic_photo(500 + i, cls=0).convert("L").convert("RGB"), outsiders / f"o{i}.png", "PNG")
    test_photo = next(r["path"] for r in before.split_rows() if r["split"] == "test")
    f = write(
        tmp_path / "c.csv",
        row(file_sha256(data / "cloudy1.jpg"), "relabel", "shine"),
        row(file_sha256(data / "rain2.jpg"), "drop"),
        row(file_sha256(data / test_photo), "outsider"),
    )
    after = photoclass.train(
        data, out=tmp_path / "after", corrections=[str(f)], outsiders=str(outsiders), compare_to=before.path, **options
    ).run
    split = {r["path"]: r for r in after.split_rows()}
    assert split["cloudy1.jpg"]["label"] == "shine" and split["rain2.jpg"]["status"] == "dropped"
    sharpened = after.model_meta()["outliers"]["sharpened"]
    assert sharpened["outsiders"] == 7 and sharpened["threshold"] <= sharpened["before"]
    compared = after.read_json(after.BEFORE_AFTER)
    assert compared["test_photos_removed"] == 1 and compared["unchanged_test"][0]["photos"] == (
        compared["whole_test"][0]["photos"] - 1
    )
    report = (after.path / after.REPORT).read_text()
    assert "Corrected labels" in report and "1 marked outsiders" in report and "outsiders) set this threshold" in report
    assert sha256_tree(data) == photos
