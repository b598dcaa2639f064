"""Every subcommand, given bad values, answers one line naming the value and the fix: exit 2,
no traceback, nothing half-written. Then one test per bug found trying photoclass as a new user."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from photoclass.cli import main

from conftest import make_flat, make_folders, train_tiny_run

pytestmark = pytest.mark.trains  # one tiny run is shared by the commands that need a model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny finished run, a data folder, a plain file, and a file where a folder is expected."""
    base = tmp_path_factory.mktemp("cli")
    run = train_tiny_run(base)
    data = make_flat(base / "data", per_class=3)
    a_file = base / "file.txt"
    a_file.write_text("not a folder")
    import numpy as np

    np.savez(base / "odd.npz", a=np.zeros((4, 28, 28), np.uint8), b=np.zeros(4))
    np.savez(base / "floats.npz", x=np.full((4, 28, 28), 300.0), y=np.arange(4))
    (base / "labels.csv").write_text("file,label\nx.jpg,cat\n")
    return {
        "RUN": str(run),
        "DATA": str(data),
        "FILE": str(a_file),
        "UNDER_FILE": str(a_file / "x"),
        "BASE": str(base),
        "CACHE": str(base / "cache"),
        "NPZ": str(base / "odd.npz"),
        "FLOATS": str(base / "floats.npz"),
        "CSV": str(base / "labels.csv"),
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BAD_VALUES = [  # (argv, what the one line must name)
    ("prepare DATA --val-size 2", "--val-size"),
    ("prepare DATA --image-size 0", "--image-size"),
    ("prepare DATA --workers -1", "workers"),
    ("prepare DATA --label-regex (", "regular expression"),
    ("prepare DATA --layout sideways", "invalid choice"),
    ("prepare FILE", "received a file"),
    ("prepare BASE/nope", "not found"),
    ("prepare DATA --out UNDER_FILE --cache-dir CACHE", "Cannot write"),
    ("train", "needs DATA"),
    ("train DATA --epochs 0", "epochs"),
    ("train DATA --epochs many", "invalid int value"),
    ("train DATA --lr -1", "lr"),
    ("train DATA --batch-size 0", "--batch-size"),
    ("train DATA --model nope", "Unknown model"),
    ("train DATA --augment blur=2", "Unknown augmentation"),
    ("train DATA --plateau-factor 2", "--plateau-factor"),
    ("train DATA --top-k -3", "--top-k"),
    ("train DATA --dropout 1.5", "dropout"),
    ("train DATA --min-side 0", "--min-side"),
    ("train DATA --out FILE", "is a file"),
    ("train DATA --out UNDER_FILE --cache-dir CACHE", "Cannot write"),
    ("train --resume BASE/nope", "no such run folder"),
    ("train --resume RUN --lr 0.1", "may change"),
    ("train DATA --device cuda", "sees no CUDA GPU"),
    ("train DATA --device gpu", "device"),
    ("train DATA --precision fp8", "invalid choice"),
    ("evaluate RUN --device cuda:1", "sees no CUDA GPU"),
    ("predict RUN DATA --device mps", "MPS"),
    ("serve RUN --device cuda", "sees no CUDA GPU"),
    ("train --resume RUN --epochs 1", "is finished"),
    ("runs BASE/nope", "No such folder of runs"),
    ("runs BASE --tolerance 2", "tolerance"),
    ("runs BASE --sort height", "invalid choice"),
    ("select BASE/nope", "No such folder of runs"),
    ("select BASE --tolerance -1", "tolerance"),
    ("select BASE --copy-to RUN/inside", "into itself"),
    ("sweep DATA --trials 0", "trials"),
    ("sweep DATA --timeout -5", "timeout"),
    ("sweep DATA --space BASE/nope.json", "Cannot read the search space"),
    ("sweep DATA --epochs 0", "epochs"),
    ("track BASE/nope", "not a finished run"),
    ("report BASE/nope", "not a complete run"),
    ("compare BASE/nope", "not a complete run"),
    ("compare RUN --out UNDER_FILE/c.html", "HINT"),
    ("compare RUN --tolerance 5", "tolerance"),
    ("evaluate BASE/nope", "not a complete run"),
    ("evaluate RUN --data BASE/nope", "not found"),
    ("export BASE/nope", "not a complete run"),
    ("export RUN --out UNDER_FILE/x.onnx", "Cannot write"),
    ("serve BASE/nope", "No such run"),
    ("serve RUN/model.json", "is a file"),
    ("serve RUN --port 0", "port"),
    ("serve RUN --port 70000", "port"),
    ("serve RUN --top-k 0", "--top-k"),
    ("serve RUN --max-upload-mb 0", "max-upload-mb"),
    ("serve RUN --max-queue -1", "--max-queue"),
    ("predict RUN DATA --batch-size 0", "--batch-size"),
    ("predict RUN DATA --top-k -3", "--top-k"),
    ("predict RUN DATA --min-confidence 2", "--min-confidence"),
    ("predict RUN DATA --sort-into FILE", "Cannot write"),
    ("predict RUN/model.json DATA", "is a file"),
    ("predict BASE/nope DATA", "No such run"),
    ("predict RUN BASE/nope.jpg", "No such file"),
    ("predict RUN DATA --format yaml", "invalid choice"),
    ("models --classes 0", "classes"),
    ("models nope*", "No model matches"),
    ("augment-preview DATA --augment blur", "Unknown augmentation"),
    ("augment-preview DATA --photos 0", "photos"),
    ("augment-preview DATA --image-size 0", "--image-size"),
    ("lr-find DATA --steps 0", "steps"),
    ("lr-find DATA --end-lr 0", "--end-lr"),
    ("lr-find DATA --out UNDER_FILE/lr.png", "Cannot write"),
    ("train DATA --strategy lpft --model compact-cnn", "needs a pretrained model"),
    ("train DATA --layer-decay 2", "--layer-decay"),
    ("train DATA --finetune-epochs 0", "--finetune-epochs"),
    ("train DATA --nproc 0", "nproc"),
    ("train DATA --head-solver sgd", "invalid choice"),
    ("sweep DATA --storage journal:", "journal"),
    ("sweep BASE/nope", "not found"),
    ("audit BASE/nope --cache-dir CACHE", "not found"),
    ("audit DATA --model compact-cnn", "needs a pretrained model"),
    ("audit DATA --folds 1", "folds"),
    ("audit DATA --out DATA/audit", "inside the data folder"),
    ("audit DATA --out UNDER_FILE", "Cannot write"),
    ("prepare NPZ --cache-dir CACHE", "x_train, y_train"),
    ("prepare FLOATS --cache-dir CACHE", "pixel values run from 300"),
    ("prepare CSV --cache-dir CACHE", "no 'path' column"),
    ("prepare DATA --layout csv --cache-dir CACHE", "needs one CSV file"),
    ("prepare DATA --layout cifar --cache-dir CACHE", "no image arrays"),
    ("models nope", "Unknown model"),
    ("models seed-mnist --image-size 12", "does not run at 12 px"),
    ("predict imagenet BASE/nope.jpg", "No such file"),
    ("frobnicate", "invalid choice"),
]


@pytest.mark.parametrize("argv, named", BAD_VALUES, ids=[a for a, _ in BAD_VALUES])
def test_every_subcommand_answers_a_bad_value_with_one_line(world, capsys, argv, named):
    args = [_fill(word, world) for word in argv.split()]
    before, here = _tree(Path(world["BASE"])), {p.name for p in Path.cwd().iterdir()}
    code, out, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("photoclass"), err
    assert named in lines[0] and "Traceback" not in err
    assert (
        "HINT" in lines[0]
        or "must be" in lines[0]
        or "Received" in lines[0]
        or "invalid" in lines[0]
        or "not found" in lines[0]
        or "No such" in lines[0]
    ), lines[0]  # names the fix or the allowed values
    assert _tree(Path(world["BASE"])) - before <= {"cache"}, "an error left files behind"
    assert {p.name for p in Path.cwd().iterdir()} == here, "an error left files in the working folder"


def test_a_closed_pipe_is_one_line_too(world):
    proc = subprocess.Popen(
        [sys.executable, "-m", "photoclass", "runs", world["BASE"], "--sort", "name"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader leaves at once, like `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 2
    assert len(err.strip().splitlines()) == 1 and "pipe" in err and "Traceback" not in err


def _fill(word: str, world: dict[str, str]) -> str:
    for key in sorted(world, key=len, reverse=True):
        if word == key or word.startswith(key + "/"):
            return world[key] + word[len(key) :]
    return word


def _tree(base: Path) -> set[str]:
    """Top-level names under `base`, and every file of the run (an error must change neither)."""
    names = {p.name for p in base.iterdir()}
    return names | {str(p) for p in (base / "run").rglob("*")}


# One test per bug found trying photoclass as a new user would.


def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "photoclass", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def tracking_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PHOTOCLASS_TRACKING", "MLFLOW_TRACKING_URI")}
    return {**env, **extra}


@pytest.mark.slow
def test_resume_honours_no_track_and_tracking_uri(tmp_path):
    pytest.importorskip("mlflow", reason="the track extra is not installed")
    data = make_flat(tmp_path / "data", per_class=4)
    common = (
        "--model",
        "compact-cnn",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--cache-dir",
        tmp_path / "cache",
    )
    first = cli("train", data, "--out", tmp_path / "run", "--no-track", *common, cwd=tmp_path, env=tracking_env())
    assert first.returncode == 0, first.stderr
    resumed = cli(
        "train", "--resume", tmp_path / "run", "--epochs", "3", "--no-track", cwd=tmp_path, env=tracking_env()
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "run" / "tracking.json").exists()
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    again = cli(
        "train", "--resume", tmp_path / "run", "--epochs", "4", "--tracking-uri", uri, cwd=tmp_path, env=tracking_env()
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "mlflow.db").exists()
    assert json.loads((tmp_path / "run" / "tracking.json").read_text())["uri"] == uri


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing_unless_asked_for_more_epochs(tmp_path):
    run = train_tiny_run(tmp_path, epochs=2)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = cli("train", "--resume", run)
    assert result.returncode == 2 and "is finished (2 epochs)" in result.stderr and "--epochs N" in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    more = cli("train", "--resume", run, "--epochs", "3")
    assert more.returncode == 0, more.stderr
    assert json.loads((run / "test.json").read_text())["training"]["epochs_run"] == 3
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3


@pytest.mark.slow
def test_evaluating_on_a_folder_named_test_never_overwrites_an_evaluation(world, tmp_path):
    folder = make_flat(tmp_path / "test", per_class=2)
    evaluations = Path(world["RUN"]) / "evaluations"
    assert cli("evaluate", world["RUN"]).returncode == 0
    own = (evaluations / "test.json").read_bytes()
    for _ in range(2):
        result = cli("evaluate", world["RUN"], "--data", folder)
        assert result.returncode == 0, result.stderr
    assert (evaluations / "test.json").read_bytes() == own
    assert {"data-test.json", "data-test-2.json"} <= {p.name for p in evaluations.iterdir()}


@pytest.mark.slow
def test_a_cached_feature_run_says_what_augmentation_it_applies_and_previews_only_that(tmp_path):
    data = make_flat(tmp_path / "data", per_class=4)
    result = cli(
        "train",
        data,
        "--out",
        tmp_path / "run",
        "--augment",
        "hflip,rotate=10",
        "--epochs",
        "2",
        "--head-solver",
        "epochs",
        "--cache-dir",
        tmp_path / "cache",
    )  # the regression uses no mirrors
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("NOTE: --augment applies in part: only the mirror of 'hflip,rotate=10' is used") == 1
    assert "--epochs" not in result.stdout  # it applies to --head-solver epochs: no note
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["applied"]["augment"] == "hflip" and config["train"]["strategy"] == "features"
    assert "Applied in training: <b>hflip</b>" in (tmp_path / "run" / "report.html").read_text()
    board = cli("runs", tmp_path).stdout
    assert "features" in board and " auto " not in board  # the strategy that ran, not "auto"


def test_config_records_what_ran_for_a_seed_cnn(tmp_path):
    data = make_flat(tmp_path / "data", per_class=6)
    import photoclass

    photoclass.train(
        data,
        out=tmp_path / "run",
        model="seed-baseline",
        epochs=1,
        threads=1,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["image_size"] == 180 and config["prepare"]["image_size"] == 180
    assert config["train"]["strategy"] == "scratch" and config["train"]["dropout"] == 0.2
    assert config["train"]["device"] == "cpu" and config["train"]["precision"] == "fp32"  # what auto chose here
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["input"]["size"] == 180


def test_a_failed_train_leaves_no_run_folder(tmp_path):
    one_class = make_folders(tmp_path / "data", per_class=3, classes=("cats",))
    result = cli("train", one_class, "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 2 and "at least 2 classes" in result.stderr
    assert not (tmp_path / "run").exists()


def test_serving_a_missing_run_says_so_before_anything_else(tmp_path):
    result = cli("serve", tmp_path / "nope")
    assert result.returncode == 2 and "No such run" in result.stderr
    assert "exporting" not in result.stdout + result.stderr


@pytest.mark.slow
def test_files_follow_the_umask_like_ordinary_files(world, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "m.onnx"
        code = cli("export", world["RUN"], "--out", out).returncode
    finally:
        os.umask(old)
    assert code == 0
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert oct((Path(world["RUN"]) / "report.html").stat().st_mode & 0o777) == oct(0o644)


def test_predict_table_and_json_mean_the_same_by_top(world):
    table = cli("predict", world["RUN"], world["DATA"], "--top-k", "2").stdout.splitlines()
    rows = json.loads(cli("predict", world["RUN"], world["DATA"], "--top-k", "2", "--format", "json").stdout)
    assert table[0].split()[-1] == "top"
    listed = table[1].split("  ")[-1].split(", ")  # the table's top column of the first photo
    assert listed == [f"{t['label']} {t['probability']:.3f}" for t in rows[0]["top"]]  # the winner first, as in JSON


def test_every_option_is_a_flag_with_help_and_its_default(capsys):
    import dataclasses

    from photoclass.cli import build_parser
    from photoclass.config import PrepareConfig, TrainConfig

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    flags = {a.dest: a for a in commands["train"]._actions}
    for config in (TrainConfig, PrepareConfig):
        for field in dataclasses.fields(config):
            assert field.name in flags, f"--{field.name.replace('_', '-')} is missing from train"
            assert flags[field.name].help, field.name
    for name, command in commands.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
                if action.default not in (None, False, argparse_suppress()):
                    assert "default" in action.help.lower(), f"{name} {action.option_strings[0]} hides its default"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--port PORT default: 8000" in out and "(default: 3)" in out and "(default: 10" in out


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
