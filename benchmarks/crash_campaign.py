"""Kill training with SIGKILL at random moments, some inside checkpoint writes; resume each.

    python benchmarks/crash_campaign.py [--runs 20] [--epochs 6] [--seed 0]

Trains one uninterrupted run on generated photos, then `--runs` runs of the same command,
each killed once: half at a random moment after the first checkpoint, half the instant a
checkpoint's temporary file appears (mid-write). Each is resumed with `--resume`. Prints
how many resumed, unreadable checkpoints, epochs lost (announced before the kill but not in
the checkpoint, plus the epoch under way), and whether the final metrics equal the
uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

COMMAND = [
    "--model",
    "compact-cnn",
    "--image-size",
    "32",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--seed",
    "3",
    "--no-track",
]


def make_photos(root: Path, per_class: int = 14) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cloudy", "rain", "shine")):
        for i in range(per_class):
            pixels = rng.normal(90 + 50 * c, 30, (48, 64, 3))
            pixels[..., c] += 60
            root.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / f"{name}{i + 1}.jpg", quality=90)
    return root


def train(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "photoclass.cli", "train", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_and_resume(
    data: Path, run: Path, cache: Path, epochs: int, *, mid_write: bool, delay: float, after_epochs: int = 0
) -> dict:
    """One trial: train, SIGKILL, resume. Mid-write: in the checkpoint write that follows
    `after_epochs` finished epochs; else `delay` seconds after the first checkpoint."""
    import torch

    proc = train(data, "--out", run, "--cache-dir", cache, "--epochs", epochs, *COMMAND)
    ckpt, metrics, deadline = run / "last.ckpt", run / "metrics.csv", time.time() + 300
    if mid_write:
        while (
            time.time() < deadline
            and proc.poll() is None
            and after_epochs
            and not (metrics.is_file() and len(metrics.read_text().splitlines()) > after_epochs)
        ):
            time.sleep(0.001)
        while time.time() < deadline and proc.poll() is None and not list(run.glob(".last.ckpt.*.tmp")):
            time.sleep(0.0002)
    else:
        while time.time() < deadline and proc.poll() is None and not ckpt.is_file():
            time.sleep(0.005)
        time.sleep(delay)
    finished_first = proc.poll() is not None
    announced = len((run / "metrics.csv").read_text().splitlines()) - 1 if (run / "metrics.csv").is_file() else 0
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    outcome = {"finished_before_kill": finished_first, "announced": announced, "readable": True, "saved": 0}
    if ckpt.is_file():
        try:
            outcome["saved"] = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1
        except Exception:
            outcome["readable"] = False
    outcome["leftover_temp_files"] = len(list(run.glob(".*.tmp")))
    resumed = (
        train("--resume", run)
        if outcome["saved"]
        else train(data, "--out", run, "--cache-dir", cache, "--epochs", epochs, *COMMAND)
    )
    out, err = resumed.communicate(timeout=600)
    outcome["resumed"] = resumed.returncode == 0
    outcome["leftover_after_resume"] = len(list(run.glob(".*.tmp")))
    outcome["error"] = "" if resumed.returncode == 0 else err.strip().splitlines()[-1:]
    return outcome


def same_result(a: Path, b: Path) -> bool:
    ta, tb = (json.loads((r / "test.json").read_text())["test"] for r in (a, b))
    return (
        all(ta[k] == tb[k] for k in ("accuracy", "loss", "confusion_matrix"))
        and (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        data, cache = make_photos(base / "data"), base / "cache"
        started = time.perf_counter()
        reference = train(data, "--out", base / "reference", "--cache-dir", cache, "--epochs", args.epochs, *COMMAND)
        reference.communicate(timeout=600)
        seconds = time.perf_counter() - started
        timing = (base / "reference" / "timing.csv").read_text().splitlines()[1:]
        epoch_seconds = sum(float(line.split(",")[1]) for line in timing)
        print(f"uninterrupted run: {seconds:.1f} s, of which {epoch_seconds:.1f} s in {args.epochs} epochs")
        tally = {
            "resumed": 0,
            "unreadable": 0,
            "same_metrics": 0,
            "max_lost": 0,
            "mid_write": 0,
            "leftover": 0,
            "leftover_after": 0,
        }
        for i in range(args.runs):
            mid_write = i % 2 == 1
            run = base / f"run-{i:02d}"
            o = kill_and_resume(
                data,
                run,
                cache,
                args.epochs,
                mid_write=mid_write,
                delay=rng.uniform(0, epoch_seconds * (args.epochs - 1) / args.epochs),
                after_epochs=rng.randrange(args.epochs - 1),
            )
            lost = max(0, o["announced"] - o["saved"]) + (0 if o["finished_before_kill"] else 1)
            same = o["resumed"] and same_result(run, base / "reference")
            tally["resumed"] += o["resumed"]
            tally["unreadable"] += not o["readable"]
            tally["same_metrics"] += same
            tally["max_lost"] = max(tally["max_lost"], lost)
            tally["mid_write"] += mid_write
            tally["leftover"] += o["leftover_temp_files"]
            tally["leftover_after"] += o["leftover_after_resume"]
            print(
                f"  run {i:2d} {'mid-write' if mid_write else 'random   '} killed with {o['saved']} epochs saved, "
                f"{o['announced']} announced; resumed {o['resumed']}, same metrics {same} {o['error'] or ''}",
                flush=True,
            )
            shutil.rmtree(run)
        print(
            f"{args.runs} runs killed ({tally['mid_write']} during a checkpoint write): {tally['resumed']} resumed, "
            f"{tally['unreadable']} unreadable checkpoints, at most {tally['max_lost']} epoch(s) lost, "
            f"{tally['same_metrics']} with final metrics equal to the uninterrupted run, "
            f"{tally['leftover']} temporary files left by the kills ({tally['leftover_after']} after resuming)"
        )
    sys.exit(0 if tally["resumed"] == tally["same_metrics"] == args.runs and not tally["unreadable"] else 1)


if __name__ == "__main__":
    main()
