"""Prepare, the default train and predict on 10,000 to 100,000 generated photos: how each grows.

    python benchmarks/scale_data.py                          # 10,000, 50,000 and 100,000 photos
    python benchmarks/scale_data.py --sizes 10000 --precision auto --predict 2000
    python benchmarks/scale_data.py --sizes 100000 --steps train prepare

Photos are generated once into --root (320x240 JPEGs, quality 85, four classes told apart by
their colours and shapes, labels in the file names; about 10 KB each) and reused. For each size,
through the real CLI with a fresh cache folder:
- `photoclass train DATA` (the default model and strategy; `--precision`, default bf16, which
  `auto` picks here for pixels but not for cached features), from a cold cache;
- `photoclass prepare DATA`, with a cache of its own;
- `photoclass predict RUN DATA --out preds.csv` on the first --predict photos (all by default).
Each line gives seconds, ms a photo, the peak memory of the process and its workers together
(sampled every 0.2 s: resident memory summed, which counts the pages the decoding workers share
with the main process once per process, and PSS, which counts them once) and the disk added
(cache folder, run folder, output file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

CLASSES = ("amber", "moss", "slate", "rose")


def _photo(i: int) -> tuple[str, bytes]:
    import io

    rng = np.random.default_rng(i)
    cls = i % len(CLASSES)
    base = np.array([[200, 140, 40], [60, 140, 60], [90, 100, 120], [210, 110, 150]][cls], dtype=np.float32)
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * x + np.sin(angle) * y) / 400
    image = base * (0.6 + 0.6 * ramp[..., None]) + rng.normal(0, 25, 3)
    for _ in range(rng.integers(2, 6)):  # blobs of another colour; the class decides their shape
        cx, cy, r = rng.uniform(0, 320), rng.uniform(0, 240), rng.uniform(15, 60)
        shape = ((x - cx) ** 2 + ((y - cy) * (1 + cls)) ** 2) < r * r
        image[shape] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 12, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return f"{CLASSES[cls]}{i:06d}.jpg", buffer.getvalue()


def generate(root: Path, n: int) -> Path:
    folder = root / f"photos{n}"
    if folder.is_dir() and len(os.listdir(folder)) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for name, data in pool.map(_photo, range(n), chunksize=256):
            (folder / name).write_bytes(data)
    return folder


def du(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total


def measure(command: list[str], *disk: Path) -> tuple[float, float, float, int]:
    """(seconds, peak GB of the process tree's resident memory, the same counting pages shared
    between the processes once (PSS), bytes added under `disk`)."""
    before = du(*disk)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = peak_pss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [p for p in [parent, *parent.children(recursive=True)] if p.is_running()]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
                peak_pss = max(peak_pss, sum(getattr(p.memory_full_info(), "pss", 0) for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return seconds, peak / 2**30, peak_pss / 2**30, du(*disk) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "photoclass-scale")
    parser.add_argument("--precision", default="bf16", help="of `train` (default: %(default)s)")
    parser.add_argument("--predict", type=int, default=0, help="photos to predict (default: all)")
    parser.add_argument(
        "--steps",
        nargs="+",
        default=["train", "prepare", "predict"],
        choices=["train", "prepare", "predict"],
        help="which to time (predict needs train)",
    )
    args = parser.parse_args()
    cli = [sys.executable, "-m", "photoclass"]
    print(
        f"{'photos':>8} {'step':>8} {'seconds':>8} {'ms/photo':>9} {'peak GB':>8} {'PSS GB':>7} {'disk MB':>8}",
        flush=True,
    )
    for n in args.sizes:
        data = generate(args.root, n)
        work = args.root / f"work{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        cache, run, prepared = work / "cache", work / "run", work / "prepared"
        # train first, from a cold cache: the default command alone; prepare then has a cache of its own
        steps = [
            (
                "train",
                [
                    *cli,
                    "train",
                    str(data),
                    "--out",
                    str(run),
                    "--cache-dir",
                    str(cache),
                    "--no-track",
                    "--precision",
                    args.precision,
                ],
                n,
            ),
            (
                "prepare",
                [*cli, "prepare", str(data), "--out", str(prepared), "--cache-dir", str(work / "cache-prepare")],
                n,
            ),
        ]
        predict = args.predict or n
        subset = work / "to_predict"
        subset.mkdir()
        for name in sorted(os.listdir(data))[:predict]:
            os.symlink(data / name, subset / name)
        steps.append(("predict", [*cli, "predict", str(run), str(subset), "--out", str(work / "preds.csv")], predict))
        for step, command, photos in steps:
            if step not in args.steps:
                continue
            seconds, peak, pss, added = measure(
                command, cache, work / "cache-prepare", run, work / "preds.csv", prepared
            )
            print(
                f"{n:>8,} {step:>8} {seconds:>8.1f} {seconds / photos * 1000:>9.2f} {peak:>8.2f} {pss:>7.2f} "
                f"{added / 2**20:>8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
