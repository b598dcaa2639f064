"""Inference speed of a trained run: batch images/s and single-image latency, on the CPU.

    python benchmarks/inference.py RUN [--data ../shared/data/weather] [--engine torch|onnx|both]

Uses the run's model through the predictors `photoclass predict` and `photoclass serve` use:
PyTorch (BatchNorm folded, channels_last) and ONNX Runtime (RUN/model.onnx, exported once),
on the cached photos of the data folder's test split; decoding is not timed (the cache
holds it). Target (2 cores): at least 80 images/s in
batches, at most 40 ms for one image.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import photoclass
from photoclass.inference.predictor import open_predictor

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, default=WEATHER)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=50, help="single-image timings")
    parser.add_argument("--engine", choices=("torch", "onnx", "both"), default="both")
    args = parser.parse_args()
    print(f"run {args.run}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for engine in ("torch", "onnx") if args.engine == "both" else (args.engine,):
        measure(open_predictor(args.run, engine=engine), args)


def measure(predictor, args) -> None:
    data = photoclass.prepare(args.data, image_size=predictor.size, progress=False)
    test = data.indices("test")
    batches = [data.images[test[i:i + args.batch_size]] for i in range(0, len(test), args.batch_size)]
    predictor.probabilities(batches[0])  # warm-up
    started = time.perf_counter()
    for pixels in batches:
        predictor.probabilities(pixels)
    batch_seconds = time.perf_counter() - started
    latencies = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predictor.probabilities(batches[0][:1])
        latencies.append((time.perf_counter() - t) * 1000)
    print(f"{predictor.engine} ({predictor.size} px):")
    print(f"  batch inference: {len(test)} photos in {batch_seconds:.2f} s = {len(test) / batch_seconds:.0f} images/s "
          f"(batch {args.batch_size})")
    print(f"  single image: median {statistics.median(latencies):.1f} ms, "
          f"p90 {sorted(latencies)[int(0.9 * len(latencies))]:.1f} ms over {args.repeats}")


if __name__ == "__main__":
    main()
