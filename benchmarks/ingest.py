"""Ingest speed and memory: cold and warm `prepare`, on the weather photos or on N synthetic ones.

    python benchmarks/ingest.py                    # ../shared/data/weather, 3 cold + 3 warm runs
    python benchmarks/ingest.py --synthetic 20000  # N/4, N/2 and N generated photos, peak memory

Each run is a fresh `photoclass prepare` process with its own empty cache (cold) or the
cache the cold run filled (warm); peak memory is the summed RSS of the process and its
decoding workers, sampled every 50 ms. Targets (2 cores): cold >= 300 images/s, warm < 1 s,
20,000 photos at 224 px under 1.5 GB, time linear in N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WEATHER = REPO.parent / "shared" / "data" / "weather"


def tree_rss_bytes(pid: int) -> int:
    """Summed resident memory of `pid` and its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total


def run_prepare(data: Path, cache: Path, image_size: int) -> dict:
    """One `photoclass prepare` process; returns its summary, wall seconds and peak memory."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "photoclass.cli",
            "prepare",
            str(data),
            "--out",
            out,
            "--cache-dir",
            str(cache),
            "--image-size",
            str(image_size),
            "--json",
        ]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed: {stderr.strip()}")
    return {"summary": json.loads(stdout), "seconds": seconds, "peak_mb": peak / 2**20}


def _synthetic(args):
    index, folder = args
    rng = np.random.default_rng(index)
    low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # smooth, photo-like colour fields
    image = Image.fromarray(low).resize((320, 240), Image.BICUBIC)
    noise = rng.normal(0, 8, (240, 320, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    label = ("cloudy", "rain", "shine", "sunrise")[index % 4]
    Image.fromarray(pixels).save(Path(folder) / f"{label}{index}.jpg", quality=85)


def synthetic_folder(n: int, base: Path) -> Path:
    folder = base / f"synthetic-{n}"
    if folder.is_dir() and len(os.listdir(folder)) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with Pool(os.cpu_count()) as pool:
        pool.map(_synthetic, [(i, str(folder)) for i in range(n)], chunksize=64)
    return folder


def subset_folder(source: Path, n: int, base: Path) -> Path:
    """The first n photos of `source`, hard-linked (no copies)."""
    folder = base / f"{source.name}-first-{n}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for name in sorted(os.listdir(source), key=lambda s: int("".join(filter(str.isdigit, s))))[:n]:
            os.link(source / name, folder / name)
    return folder


def bench_folder(data: Path, image_size: int, repeats: int) -> None:
    print(f"data: {data}   image size: {image_size}   cores: {os.cpu_count()}")
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold = run_prepare(data, Path(cache), image_size)
            warm = run_prepare(data, Path(cache), image_size)
        s = cold["summary"]
        n = s["usable"] + s["skipped"]
        print(
            f"run {i + 1}: cold {cold['seconds']:.2f} s = {n / cold['seconds']:.0f} images/s "
            f"(in-process {s['seconds']['total']:.2f} s, peak {cold['peak_mb']:.0f} MB) | "
            f"warm {warm['seconds']:.2f} s (in-process {warm['summary']['seconds']['total']:.2f} s, "
            f"decoded {warm['summary']['cache']['decoded']})"
        )


def bench_synthetic(n: int, image_size: int, base: Path) -> None:
    full = synthetic_folder(n, base)
    print(f"synthetic photos: {n} at 320x240 in {full}; image size {image_size}; cores {os.cpu_count()}")
    print(f"{'photos':>8} {'cold s':>8} {'images/s':>9} {'peak MB':>8} {'warm s':>7}")
    for k in (n // 4, n // 2, n):
        data = full if k == n else subset_folder(full, k, base)
        with tempfile.TemporaryDirectory(dir=base) as cache:
            cold = run_prepare(data, Path(cache), image_size)
            warm = run_prepare(data, Path(cache), image_size)
        print(
            f"{k:>8} {cold['seconds']:>8.1f} {k / cold['seconds']:>9.0f} {cold['peak_mb']:>8.0f} "
            f"{warm['seconds']:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=WEATHER)
    parser.add_argument("--synthetic", type=int, metavar="N", help="generate N photos instead")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "photoclass-bench")
    args = parser.parse_args()
    if args.synthetic:
        bench_synthetic(args.synthetic, args.image_size, args.work_dir)
    else:
        if not args.data.is_dir():
            raise SystemExit(f"no photos at {args.data}; pass --data DIR or --synthetic N")
        bench_folder(args.data, args.image_size, args.repeats)


if __name__ == "__main__":
    main()
