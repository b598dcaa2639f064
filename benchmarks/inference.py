"""Inference speed of a trained run: batch images/s and single-image latency, on the CPU.

    python benchmarks/inference.py RUN [--data ../shared/data/weather]

Uses the run's model as prediction will (eval mode, BatchNorm folded where the model
supports it, channels_last), on the cached 224 px photos of the data folder's test split;
decoding is not timed (the cache holds it). Target (2 cores): at least 80 images/s in
batches, at most 40 ms for one image.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import photoclass
from photoclass.data.loader import BatchLoader
from photoclass.training.perf import setup_torch

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, default=WEATHER)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=50, help="single-image timings")
    args = parser.parse_args()
    setup_torch(0, 0)
    model, meta = photoclass.load(args.run)
    if hasattr(model, "inference_copy"):
        model = model.inference_copy()
    model = model.eval().to(memory_format=torch.channels_last)
    size, mean, std = meta["input"]["size"], meta["input"]["mean"], meta["input"]["std"]
    data = photoclass.prepare(args.data, image_size=size, progress=False)
    test = data.indices("test")
    loader = BatchLoader(data.images, data.labels, test, batch_size=args.batch_size, mean=mean, std=std)
    batches = list(loader.batches())
    with torch.no_grad():
        model(batches[0][0])  # warm-up
        started = time.perf_counter()
        for x, _ in batches:
            model(x)
        batch_seconds = time.perf_counter() - started
        one = batches[0][0][:1]
        latencies = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model(one)
            latencies.append((time.perf_counter() - t) * 1000)
    print(f"run {args.run} ({meta['architecture']}, {size} px), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"batch inference: {len(test)} photos in {batch_seconds:.2f} s = {len(test) / batch_seconds:.0f} images/s "
          f"(batch {args.batch_size})")
    print(f"single image: median {statistics.median(latencies):.1f} ms, "
          f"p90 {sorted(latencies)[int(0.9 * len(latencies))]:.1f} ms over {args.repeats}")


if __name__ == "__main__":
    main()
