import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import photoclass
from photoclass import PhotoclassError
from photoclass.core import atomic
from photoclass.runs.rundir import RunDir, load_model
from photoclass.workflows.train import train

from conftest import make_flat

pytestmark = pytest.mark.trains  # each test trains at least one small model

RUN_FILES = (
    "config.json",
    "split.csv",
    "metrics.csv",
    "timing.csv",
    "model.safetensors",
    "model.json",
    "last.ckpt",
    "test.json",
    "plots/learning_curves.png",
    "plots/confusion_matrix.png",
    "plots/augmentation.png",
)
FAST = dict(model="compact-cnn", image_size=32, batch_size=16, threads=1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_flat(tmp_path_factory.mktemp("photos") / "data", per_class=14)


def train_cli(*args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "photoclass.cli", "train", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def cli_args(photos, out, cache, epochs):
    return [
        photos,
        "--out",
        out,
        "--cache-dir",
        cache,
        "--epochs",
        epochs,
        "--model",
        "compact-cnn",
        "--image-size",
        32,
        "--batch-size",
        4,
        "--threads",
        1,
        "--seed",
        3,
    ]


def test_train_writes_a_complete_run_that_loads_back(photos, tmp_path):
    result = train(photos, out=tmp_path / "run", epochs=3, cache_dir=tmp_path / "cache", verbose=False, **FAST)
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    test = json.loads((tmp_path / "run" / "test.json").read_text())
    assert set(test["test"]["per_class"]) == {"cloudy", "rain", "shine"}
    assert 0 <= test["test"]["accuracy"] <= 1 and test["test"]["count"] == 6
    assert test["generalization_gap"] == pytest.approx(test["train"]["accuracy"] - test["test"]["accuracy"])
    assert sum(map(sum, test["test"]["confusion_matrix"])) == 6
    assert "top2_accuracy" in test["test"] and test["training"]["epochs_run"] == 3
    assert result.test["accuracy"] == test["test"]["accuracy"]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert header[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr" and len(header) == 4

    model, meta = load_model(tmp_path / "run")
    assert meta["classes"] == ["cloudy", "rain", "shine"] and meta["input"]["size"] == 32
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2


def test_same_seed_gives_identical_metrics(photos, tmp_path):
    for name in ("a", "b"):
        train(photos, out=tmp_path / name, epochs=3, seed=7, cache_dir=tmp_path / "cache", verbose=False, **FAST)
    a, b = ((tmp_path / n / "metrics.csv").read_bytes() for n in "ab")
    assert a == b


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(photos, tmp_path):
    cache = tmp_path / "cache"
    full = train_cli(*cli_args(photos, tmp_path / "full", cache, 5))
    assert full.wait(timeout=300) == 0, full.stderr.read()

    killed = train_cli(*cli_args(photos, tmp_path / "killed", cache, 5))
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # two epochs done, the third under way
    killed.wait(timeout=30)
    done = torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["epoch"] + 1
    assert 2 <= done < 5  # at most one epoch of work lost

    resumed = train_cli("--resume", tmp_path / "killed")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming {tmp_path / 'killed'} at epoch {done + 1}/5" in out
    full_test = json.loads((tmp_path / "full" / "test.json").read_text())["test"]
    resumed_test = json.loads((tmp_path / "killed" / "test.json").read_text())["test"]
    for key in ("accuracy", "loss", "confusion_matrix", "per_class"):
        assert resumed_test[key] == full_test[key], key
    assert (tmp_path / "full" / "metrics.csv").read_bytes() == metrics.read_bytes()


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_and_a_second_exits_at_once(photos, tmp_path):
    cache = tmp_path / "cache"
    proc = train_cli(*cli_args(photos, tmp_path / "run", cache, 200))
    ckpt = tmp_path / "run" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.is_file():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - sent < 15
    assert "stopping after this step and saving" in err and "--resume" in out
    assert torch.load(ckpt, weights_only=True)["epoch"] >= 0

    proc = train_cli(*cli_args(photos, tmp_path / "run2", cache, 200))
    while time.time() < deadline + 60 and not (tmp_path / "run2" / "last.ckpt").is_file():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    proc.communicate(timeout=30)
    assert proc.returncode in (130, -signal.SIGINT) and time.time() - sent < 5


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_readable(tmp_path, monkeypatch):
    run = RunDir(tmp_path).create()
    run.save_checkpoint({"epoch": 1, "weights": torch.ones(3)})

    def crash(*args):
        raise OSError("killed mid-write")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        run.save_checkpoint({"epoch": 2, "weights": torch.zeros(3)})
    assert run.load_checkpoint()["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_checkpoints_refuse_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"epoch": 1, "payload": Evil()}, tmp_path / "last.ckpt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        RunDir(tmp_path).load_checkpoint()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)
        )

    def forward(self, x):
        return self.body(x)


def test_any_torch_module_can_be_trained_and_loaded_back(photos, tmp_path):
    result = train(
        photos,
        model=TinyNet(),
        out=tmp_path / "run",
        epochs=2,
        image_size=32,
        cache_dir=tmp_path / "cache",
        verbose=False,
        threads=1,
    )
    assert result.test["count"] == 6
    with pytest.raises(PhotoclassError, match="custom model \\(TinyNet\\).*pass model="):
        load_model(tmp_path / "run")
    model, meta = load_model(tmp_path / "run", model=TinyNet())
    assert meta["architecture"] == "custom:TinyNet"


def test_bad_options_and_existing_runs_are_clear_errors(photos, tmp_path):
    with pytest.raises(PhotoclassError, match=r"Unknown option\(s\) \['epoch'\]"):
        train(photos, epoch=3)
    with pytest.raises(PhotoclassError, match=r"`optimizer` must be one of .* Received: optimizer='adamax'"):
        train(photos, optimizer="adamax")
    train(photos, out=tmp_path / "run", epochs=1, cache_dir=tmp_path / "cache", verbose=False, **FAST)
    with pytest.raises(PhotoclassError, match="already holds a run. HINT: pass another --out"):
        train(photos, out=tmp_path / "run", epochs=1, cache_dir=tmp_path / "cache", verbose=False, **FAST)


@pytest.mark.slow
def test_evaluate_cli_on_the_run_and_on_another_folder(photos, tmp_path):
    train(photos, out=tmp_path / "run", epochs=1, cache_dir=tmp_path / "cache", verbose=False, **FAST)
    other = make_flat(tmp_path / "other", per_class=3, start_seed=500)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    result = subprocess.run(
        [sys.executable, "-m", "photoclass.cli", "evaluate", tmp_path / "run", "--data", other, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test"]["count"] == 9
    make_flat(tmp_path / "alien", per_class=2, classes=("fog", "snow"))
    result = subprocess.run(
        [sys.executable, "-m", "photoclass.cli", "evaluate", tmp_path / "run", "--data", tmp_path / "alien"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2 and "classes the model does not know: ['fog', 'snow']" in result.stderr


def test_a_prepared_folder_can_be_trained_on(photos, tmp_path):
    photoclass.prepare(photos, out=tmp_path / "prepared", cache_dir=tmp_path / "cache", seed=4, progress=False)
    result = train(tmp_path / "prepared", out=tmp_path / "run", epochs=1, verbose=False, **FAST)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["prepare"]["seed"] == 4 and config["data"] == str(photos)
    assert result.test["count"] == 6


def test_fit_is_named_steps_whose_callbacks_reset_each_run(tmp_path):
    from photoclass.training.callbacks import Callback, EarlyStopping
    from photoclass.training.features import FeatureLoader
    from photoclass.training.loop import fit

    features = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    labels = (features[:, 0] > 0).long()
    loader = FeatureLoader(features, labels, np.arange(40), batch_size=8, shuffle=True)

    class Recorder(Callback):
        def on_fit_start(self, fit_state):
            self.epochs, self.batches = [], 0

        def on_batch_end(self, fit_state):
            self.batches += 1

        def on_epoch_end(self, fit_state, row):
            self.epochs.append(row["epoch"])

    stopper, recorder = EarlyStopping("val_acc", patience=2), Recorder()
    for _ in range(2):  # the same callbacks in a second fit start afresh
        model = nn.Linear(8, 2)
        state = fit(
            model,
            {"train": loader, "val": loader},
            optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            loss_fn=nn.CrossEntropyLoss(),
            epochs=30,
            callbacks=[stopper, recorder],
            progress=False,
        )
        assert state.stopped_early and "val_acc has not improved for 2 epochs" in state.stop_reason
        assert recorder.epochs == [r["epoch"] for r in state.history] and recorder.epochs[0] == 1
        assert recorder.batches == 5 * len(state.history)
        assert len(state.history) < 30


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_cpu_and_fp16_keeps_its_scaler(tmp_path, precision):
    data = make_flat(tmp_path / "data", per_class=6)
    result = train(
        data,
        out=tmp_path / "run",
        model="compact-cnn",
        image_size=32,
        epochs=2,
        batch_size=8,
        threads=1,
        precision=precision,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    assert all(np.isfinite(h["train_loss"]) for h in result.history) and result.test is not None
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["precision"] == precision and config["train"]["device"] == "cpu"
    checkpoint = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    if precision == "fp16":
        assert checkpoint["scaler"]["scale"] > 0  # resume carries the loss scale
    else:
        assert checkpoint["scaler"] == {}
    more = train(resume=tmp_path / "run", epochs=3, verbose=False, progress=False, track=False)
    assert len(more.history) == 3


def test_the_memory_layout_is_channels_last_on_a_cpu_and_plain_on_a_gpu_unless_asked(tmp_path):
    from photoclass.core.device import channels_last
    from photoclass.data.loader import BatchLoader

    assert channels_last("cpu") and not channels_last("cuda") and not channels_last("cuda:1")
    assert channels_last("cuda", True) and not channels_last("cpu", False)
    images, labels = np.zeros((4, 8, 8, 3), np.uint8), np.arange(4)
    for wanted, layout in ((None, torch.channels_last), (False, torch.contiguous_format)):
        x, _ = next(
            BatchLoader(
                images, labels, np.arange(4), batch_size=4, mean=(0.5,) * 3, std=(0.5,) * 3, channels_last=wanted
            ).batches()
        )
        assert x.is_contiguous(memory_format=layout)
        assert not x.is_contiguous(memory_format=torch.contiguous_format if wanted is None else torch.channels_last)
    data = make_flat(tmp_path / "data", per_class=4)
    for wanted in (None, False):
        out = tmp_path / f"run-{wanted}"
        train(
            data,
            out=out,
            epochs=1,
            channels_last=wanted,
            cache_dir=tmp_path / "cache",
            verbose=False,
            progress=False,
            track=False,
            **FAST,
        )
        recorded = json.loads((out / "config.json").read_text())["train"]["channels_last"]
        assert recorded is (wanted is None)  # what ran, not "auto"


def test_an_absent_device_is_a_one_line_error_before_any_work(tmp_path):
    data = make_flat(tmp_path / "data", per_class=3)
    with pytest.raises(
        PhotoclassError, match=r"device='cuda' but this PyTorch .* sees no CUDA GPU.*HINT: --device cpu"
    ):
        train(data, out=tmp_path / "run", device="cuda", cache_dir=tmp_path / "cache", verbose=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "rows, solved, says",
    [(1, True, "one solve"), (11, True, "one solve and 10 epochs"), (1, False, "1 epoch,"), (12, False, "12 epochs")],
)
def test_a_results_summary_counts_a_one_solve_fit_and_its_epochs_in_words(tmp_path, rows, solved, says):
    from photoclass.workflows.train import TrainResult

    run = RunDir(tmp_path)
    if solved:  # a logistic regression fitted on the cached features: the history's first row
        run.write_json("classifier.json", {"C": 1.0})
    result = TrainResult(run, {"accuracy": 0.9, "loss": 0.3}, [{"epoch": i + 1} for i in range(rows)], seconds=2.0)
    assert f"loss 0.3000, {says}" in repr(result) and "1 epochs" not in repr(result)
