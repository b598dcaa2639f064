import os

import pytest

from photoclass import PhotoclassError
from photoclass.data.scan import scan_folder

from conftest import make_flat, make_folders, save, synthetic_photo


def labels(result):
    return {p.relpath: p.label for p in result.photos}


def test_flat_folder_takes_the_leading_letters_as_label(tmp_path):
    root = make_flat(tmp_path / "d", per_class=2)
    result = scan_folder(root)
    assert result.layout == "flat"
    assert labels(result)["cloudy1.jpg"] == "cloudy"
    assert labels(result)["rain2.jpg"] == "rain"


def test_label_regex_overrides_the_default(tmp_path):
    root = tmp_path / "d"
    save(synthetic_photo(1), root / "IMG_001_cat.jpg")
    save(synthetic_photo(2), root / "IMG_002_dog.jpg")
    assert set(labels(scan_folder(root)).values()) == {"IMG"}
    result = scan_folder(root, label_regex=r"_([a-z]+)$")
    assert labels(result) == {"IMG_001_cat.jpg": "cat", "IMG_002_dog.jpg": "dog"}


def test_file_name_without_label_is_reported(tmp_path):
    root = make_flat(tmp_path / "d", per_class=1)
    save(synthetic_photo(3), root / "0042.jpg")
    photo = next(p for p in scan_folder(root).photos if p.relpath == "0042.jpg")
    assert photo.label is None and "no label in the file name" in photo.reason


@pytest.mark.parametrize(
    "regex, message",
    [
        ("([a-z]+", "not a valid regular expression"),
        ("[a-z]+", "exactly one group"),
        ("([a-z])([0-9])", "exactly one group"),
    ],
)
def test_bad_label_regex_says_what_and_how(tmp_path, regex, message):
    root = make_flat(tmp_path / "d", per_class=1)
    with pytest.raises(PhotoclassError, match=message):
        scan_folder(root, label_regex=regex)


def test_class_folders_with_nested_subfolders(tmp_path):
    root = make_folders(tmp_path / "d", per_class=2)
    save(synthetic_photo(9), root / "rain" / "2019" / "deep.jpg")
    result = scan_folder(root)
    assert result.layout == "folders"
    assert labels(result)["rain/2019/deep.jpg"] == "rain"
    assert {p.label for p in result.photos} == {"cloudy", "rain", "shine"}


def test_hidden_folders_and_files_never_become_classes_or_photos(tmp_path):
    root = make_folders(tmp_path / "d", per_class=2)
    for hidden in (".ipynb_checkpoints", "__MACOSX", ".thumbnails"):
        save(synthetic_photo(5), root / hidden / "x.jpg")
    save(synthetic_photo(6), root / "rain" / "._rain.jpg")
    (root / "rain" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "rain" / "Thumbs.db").write_bytes(b"\0")
    (root / "rain" / "notes.txt").write_text("not a photo")
    result = scan_folder(root)
    assert {p.label for p in result.photos} == {"cloudy", "rain", "shine"}
    assert len(result.photos) == 6
    assert result.ignored["hidden"] == 6
    assert result.ignored["not an image file (by suffix)"] == 1


def test_pre_split_folders_are_respected(tmp_path):
    for split in ("train", "valid", "test"):
        make_folders(tmp_path / "d" / split, per_class=2)
    result = scan_folder(tmp_path / "d")
    assert result.layout == "split"
    assert {p.given_split for p in result.photos} == {"train", "val", "test"}
    assert labels(result)["valid/rain/img_0.jpg"] == "rain"


def test_symlinks_are_not_followed_unless_asked_and_never_out_of_the_root(tmp_path):
    root = make_folders(tmp_path / "d", per_class=2)
    outside = save(synthetic_photo(11), tmp_path / "elsewhere" / "secret.jpg")
    os.symlink(outside, root / "rain" / "outside.jpg")
    os.symlink(root / "cloudy" / "img_0.jpg", root / "rain" / "inside.jpg")
    os.symlink(outside.parent, root / "linked_class")

    default = scan_folder(root)
    assert "rain/inside.jpg" not in labels(default)
    assert default.ignored["symlink, not followed (follow_symlinks)"] == 3

    followed = scan_folder(root, follow_symlinks=True)
    assert labels(followed)["rain/inside.jpg"] == "rain"
    assert "rain/outside.jpg" not in labels(followed)
    assert "linked_class" not in {p.label for p in followed.photos}
    assert followed.ignored["symlink pointing out of the folder"] == 2


def test_missing_folder_and_unknown_layout_are_clear_errors(tmp_path):
    with pytest.raises(PhotoclassError, match=r"Folder not found: .*nope"):
        scan_folder(tmp_path / "nope")
    root = make_flat(tmp_path / "d", per_class=1)
    with pytest.raises(PhotoclassError, match=r"`layout` must be one of .* Received: layout='grid'"):
        scan_folder(root, layout="grid")


@pytest.mark.parametrize(
    "train_name, test_name",
    [("training_set", "test_set"), ("Training", "Testing"), ("train-data", "eval"), ("trainset", "dev")],
)
def test_split_folders_are_recognized_by_any_common_name(tmp_path, train_name, test_name):
    root = tmp_path / "d"
    make_folders(root / train_name, per_class=3, classes=("cats", "dogs"))
    make_folders(root / test_name, per_class=2, classes=("cats", "dogs"))
    result = scan_folder(root)
    assert result.layout == "split"
    assert {p.label for p in result.photos} == {"cats", "dogs"}
    assert {p.given_split for p in result.photos if p.relpath.startswith(train_name)} == {"train"}
    assert not result.notes  # the names said it: nothing assumed


def test_top_folders_holding_the_same_classes_are_splits_and_the_assumption_is_noted(tmp_path):
    root = tmp_path / "d"
    make_folders(root / "batch_a", per_class=4, classes=("cats", "dogs"))
    make_folders(root / "batch_b", per_class=2, classes=("cats", "dogs"))
    result = scan_folder(root)
    assert result.layout == "split"
    assert {p.label for p in result.photos} == {"cats", "dogs"}
    splits = {p.relpath.split("/")[0]: p.given_split for p in result.photos}
    assert splits == {"batch_a": "train", "batch_b": "test"}  # the larger one trains
    assert len(result.notes) == 1 and "batch_a/ = train" in result.notes[0] and "--layout folders" in result.notes[0]
    # and the override reads them as classes
    assert {p.label for p in scan_folder(root, layout="folders").photos} == {"batch_a", "batch_b"}


def test_a_class_folder_holding_class_like_subfolders_is_a_note(tmp_path):
    root = tmp_path / "d"
    make_folders(root / "a", per_class=2, classes=("cats", "dogs"))
    make_folders(root / "b", per_class=2, classes=("birds",))
    result = scan_folder(root)
    assert result.layout == "folders"
    assert any("class-like subfolders" in n and "'a'" in n for n in result.notes)


ANT_NAMES = (
    "0013035",
    "1030023514_aad5c608f9",
    "Ant_1",
    "army-ant",
    "MehdiabadiAnt2",
    "5650366_e22b7e1065",
    "6240329_72c01e663e",
    "9715481_b3cb4114ff",
    "24335309_c5ea483bb8",
    "45472593_bfd624f8dc",
    "a9ba6cab82",
    "f3c1b2d4e5",
    "2265825502_fff99cfd2d",
    "Ant-1818",
)


def one_class_folder(root):
    """myphotos/ants/ named as such folders are (camera numbers, hashes, a few words), and myphotos/bees/."""
    for i, name in enumerate(ANT_NAMES):
        save(synthetic_photo(i), root / "ants" / f"{name}.jpg")
    save(synthetic_photo(99), root / "bees" / "16838648_415acd9e3f.jpg")
    return root / "ants"


def test_one_class_folder_given_as_the_data_points_at_its_parent(tmp_path):
    ants = one_class_folder(tmp_path / "myphotos")
    with pytest.raises(
        PhotoclassError,
        match=r"myphotos/ants looks like one class's folder, not photos labelled by "
        r"file name: of its 14 photos, 8 have no label .* HINT: point at its parent .*myphotos, whose "
        r"subfolders \(ants, bees\) are the classes",
    ):
        scan_folder(ants)
    assert {p.label for p in scan_folder(ants, label_regex=r"^([A-Za-z]+)").photos} >= {"Ant", "army"}  # asked for


def test_labels_in_file_names_still_scan_with_a_few_unlabelled_photos(tmp_path):
    root = make_flat(tmp_path / "weather", per_class=4)  # cloudy1.jpg, rain3.jpg, ...
    for i in range(4):
        save(synthetic_photo(50 + i), root / f"cat.{i + 1}.jpg")
    for name in ("0042", "1030023514_aad5c608f9"):
        save(synthetic_photo(60), root / f"{name}.jpg")
    result = scan_folder(root)
    assert result.layout == "flat"
    assert {p.label for p in result.photos} == {"cloudy", "rain", "shine", "cat", None}


def test_the_weather_folder_still_reads_as_labelled_by_file_name(weather_dir):
    result = scan_folder(weather_dir)
    assert result.layout == "flat" and {p.label for p in result.photos} == {"cloudy", "rain", "shine", "sunrise"}


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_prepare_and_train_say_so_in_one_line_and_write_nothing(tmp_path, capsys, command):
    from photoclass.cli import main

    ants = one_class_folder(tmp_path / "myphotos")
    out = tmp_path / "out"
    code = main(
        [
            command,
            str(ants),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            *(["--model", "small-resnet"] if command == "train" else []),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "ants looks like one class's folder" in err and f"HINT: point at its parent {ants.parent}," in err
    assert "pass --label-regex if the file names do hold the labels" in err
