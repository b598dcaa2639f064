"""Data-parallel training in real processes: torchrun, the gloo backend, two ranks on this CPU."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.trains, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"


def photoclass(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "photoclass", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_two_gloo_processes_write_one_run_that_matches_one_process(tmp_path):
    common = (
        "--model",
        "efficientnet-lite0-ms",
        "--head-solver",
        "epochs",
        "--epochs",
        "20",
        "--cache-dir",
        tmp_path / "cache",
        "--no-track",
    )
    finish(photoclass("train", EXAMPLES, "--out", tmp_path / "one", *common, cwd=tmp_path))
    double = finish(photoclass("train", EXAMPLES, "--nproc", "2", "--out", tmp_path / "two", *common, cwd=tmp_path))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "one", "two"]  # nothing else, from either rank
    assert double.count("test: accuracy") == 1 and double.count("data: 100 photos") == 1  # rank 1 prints nothing
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    one, two = (json.loads((tmp_path / run / "test.json").read_text())["test"] for run in ("one", "two"))
    # The same split, the same cached features (each rank encodes half, all get all) and the same
    # global batches, whose gradient DDP averages from two equal halves: only the dropout masks and
    # the order of float sums differ, which can move a borderline photo. So: within one of the 16
    # test photos.
    assert abs(one["accuracy"] - two["accuracy"]) <= 1 / 16 + 1e-9
    assert json.loads((tmp_path / "two" / "config.json").read_text())["train"]["device"] == "cpu"
    assert torch.load(tmp_path / "two" / "last.ckpt", weights_only=True)["processes"] == 2


def test_a_two_process_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    common = (
        "--model",
        "compact-cnn",
        "--image-size",
        "96",
        "--epochs",
        "8",
        "--cache-dir",
        tmp_path / "cache",
        "--no-track",
        "--nproc",
        "2",
    )
    finish(photoclass("train", EXAMPLES, "--out", tmp_path / "full", *common))

    killed = photoclass("train", EXAMPLES, "--out", tmp_path / "killed", *common)
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    # the launcher, torchrun and both ranks at once (torchrun starts its workers in sessions of their own)
    subprocess.run(["pkill", "-KILL", "-f", str(tmp_path / "killed")], check=True)
    killed.wait(timeout=60)
    time.sleep(1)
    done = torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["epoch"] + 1
    assert 2 <= done < 8 and not (tmp_path / "killed" / "test.json").exists()

    out = finish(photoclass("train", "--resume", tmp_path / "killed", "--nproc", "2"))
    assert f"resuming {tmp_path / 'killed'} at epoch {done + 1}/8" in out
    assert (tmp_path / "killed" / "metrics.csv").read_text() == (tmp_path / "full" / "metrics.csv").read_text()
    test = [json.loads((tmp_path / r / "test.json").read_text())["test"]["accuracy"] for r in ("killed", "full")]
    assert test[0] == test[1]


def test_two_processes_fit_the_regression_head_exactly_as_one(tmp_path):
    common = ("--model", "efficientnet-lite0-ms", "--cache-dir", tmp_path / "cache", "--no-track")
    one = finish(photoclass("train", EXAMPLES, "--out", tmp_path / "one", *common))
    two = finish(photoclass("train", EXAMPLES, "--nproc", "2", "--out", tmp_path / "two", *common))
    assert two.count("classifier: logistic regression") == 1  # fitted by each rank, printed by one
    chosen = [line.split(" by ")[0] for line in (one + two).splitlines() if line.startswith("classifier:")]
    assert len(chosen) == 2 and chosen[0] == chosen[1]  # the same C: every rank has every feature
    first, second = (json.loads((tmp_path / run / "test.json").read_text())["test"] for run in ("one", "two"))
    assert first["accuracy"] == second["accuracy"] and first["loss"] == pytest.approx(second["loss"], abs=1e-4)
