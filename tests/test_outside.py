"""Nothing is written inside the user's data folder: every command that writes refuses an output
path there, in one line naming both paths, and the folder's bytes stay as they were."""

import shutil
from pathlib import Path

import pytest

from photoclass.cli import main
from photoclass.core.errors import PhotoclassError
from photoclass.data.outside import check_outside, data_folder

from conftest import sha256_tree, train_tiny_run

pytestmark = pytest.mark.trains


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished run outside the data folder, and a copy of it inside, as a run made before
    this check could have been (its config names that data folder)."""
    base = tmp_path_factory.mktemp("outside")
    run = train_tiny_run(base)
    data = base / "data"
    shutil.copytree(run, data / "oldrun")
    return {
        "RUN": str(run),
        "DATA": str(data),
        "OLDRUN": str(data / "oldrun"),
        "CACHE": str(base / "cache"),
        "BASE": str(base),
    }


WRITING_COMMANDS = [  # (argv, the path that must be named)
    ("prepare DATA --out DATA/prepared --cache-dir CACHE", "DATA/prepared"),
    ("prepare DATA --out BASE/prepared --cache-dir DATA/cache", "DATA/cache"),
    ("train DATA --out DATA/runs/x --model compact-cnn --cache-dir CACHE", "DATA/runs/x"),
    ("lr-find DATA --out DATA/lr.png --model compact-cnn --cache-dir CACHE", "DATA/lr.png"),
    ("audit DATA --out DATA/audit --cache-dir CACHE", "DATA/audit"),
    ("sweep DATA --out DATA/sweeps --trials 1 --cache-dir CACHE --no-track", "DATA/sweeps"),
    ("augment-preview DATA --out DATA/preview.png --cache-dir CACHE", "DATA/preview.png"),
    ("evaluate OLDRUN --device cpu", "DATA/oldrun/evaluations"),
    ("predict RUN DATA --sort-into DATA/sorted", "DATA/sorted"),
    ("predict RUN DATA/cloudy1.jpg --sort-into DATA/sorted", "DATA/sorted"),
    ("export RUN --out DATA/model.onnx", "DATA/model.onnx"),
    ("compare RUN --out DATA/compare.html", "DATA/compare.html"),
    ("report OLDRUN", "DATA/oldrun/report.html"),
    ("select BASE --copy-to DATA/best", "DATA/best"),
]


def _snapshot(folder: str):
    """Every file's bytes and every folder: an empty folder made inside counts as a change."""
    root = Path(folder)
    return sha256_tree(root), sorted(str(p) for p in root.rglob("*") if p.is_dir())


def _words(argv: str, world) -> list[str]:
    words = []
    for word in argv.split():
        for key in sorted(world, key=len, reverse=True):
            if word.startswith(key):
                word = world[key] + word[len(key) :]
                break
        words.append(word)
    return words


@pytest.mark.parametrize("argv,named", WRITING_COMMANDS, ids=[c[0].split()[0] for c in WRITING_COMMANDS])
def test_every_writing_command_refuses_an_output_inside_the_data_folder(world, capsys, monkeypatch, argv, named):
    monkeypatch.chdir(world["BASE"])
    before = _snapshot(world["DATA"])
    code = main(_words(argv, world))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "inside the data folder" in err and _words(named, world)[0] in err and world["DATA"] in err
    assert _snapshot(world["DATA"]) == before


def test_the_default_run_folder_is_refused_when_run_from_inside_the_data(world, capsys, monkeypatch):
    monkeypatch.chdir(world["DATA"])
    before = _snapshot(world["DATA"])
    assert main(["train", ".", "--model", "compact-cnn", "--cache-dir", world["CACHE"]]) == 2
    err = capsys.readouterr().err
    assert "--out runs/compact-cnn-" in err and "inside the data folder" in err
    assert _snapshot(world["DATA"]) == before


def test_outputs_beside_the_data_are_accepted(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    (tmp_path / "labels.csv").write_text("path,label\n")
    assert check_outside(tmp_path / "photos-runs", data) == tmp_path / "photos-runs"
    assert check_outside(tmp_path / "photos" / ".." / "runs", data)  # resolved, not compared as text
    assert check_outside(tmp_path / "runs", tmp_path / "labels.csv")  # its rows name their photos
    assert data_folder(tmp_path / "labels.csv") == (tmp_path / "labels.csv").resolve()


def test_a_symbolic_link_into_the_data_is_refused_too(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    with pytest.raises(PhotoclassError, match="inside the data folder"):
        check_outside(tmp_path / "link" / "runs", data)
