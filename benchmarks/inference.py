"""Every engine of a trained run, side by side on the same photos: images/s, latency, accuracy.

    python benchmarks/inference.py RUN [--engines torch,onnx,openvino-bf16]

Engines: PyTorch in fp32 and bf16 (BatchNorm folded, channels-last), and the run's verified
exports (`photoclass export`; made here when missing, and skipped with the reason when the
export is refused or its runtime is not installed): ONNX Runtime fp32 and INT8, OpenVINO
fp32, bf16 (CPUs with native bf16) and INT8, LiteRT fp32 and INT8. All run on the run's own
test photos, decoded once (decoding is not timed), in batches of 16 taken in turns engine
after engine, so each sees the same machine; then one photo at a time for the latency. Agreement: the share of photos
given the same class as PyTorch fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from photoclass.core.device import native_bf16
from photoclass.core.errors import PhotoclassError
from photoclass.inference import export as exporting
from photoclass.inference.predictor import Predictor, open_predictor
from photoclass.inference.verify import run_photos
from photoclass.runs.rundir import RunDir

ENGINES = (
    "torch",
    "torch-bf16",
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
    "litert",
    "litert-int8",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, from " + ", ".join(ENGINES))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the photos, in turns")
    parser.add_argument("--repeats", type=int, default=30, help="single-photo timings per engine")
    args = parser.parse_args()
    print(
        f"run {args.run}; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {native_bf16()}, {torch.get_num_threads()} threads"
    )
    predictors = {}
    for name in args.engines.split(","):
        try:
            predictors[name] = engine(args.run, name)
        except (PhotoclassError, ImportError) as e:
            print(f"{name}: skipped: {e}")
    photos = run_photos(RunDir(args.run), next(iter(predictors.values())).size)
    batches = [photos.pixels[i : i + args.batch_size] for i in range(0, len(photos.labels), args.batch_size)]
    for p in predictors.values():  # warm-up, untimed
        p.outputs(batches[0])
    seconds = {name: [] for name in predictors}
    labels = {}
    for _ in range(args.rounds):
        found = {name: [] for name in predictors}
        spent = dict.fromkeys(predictors, 0.0)
        for batch in batches:
            for name, p in predictors.items():
                started = time.perf_counter()
                found[name].append(p.outputs(batch)[0])
                spent[name] += time.perf_counter() - started
        for name in predictors:
            seconds[name].append(spent[name])
            labels[name] = np.concatenate(found[name]).argmax(1)
    latency = {name: [] for name in predictors}
    for _ in range(args.repeats):
        for name, p in predictors.items():
            started = time.perf_counter()
            p.outputs(batches[0][:1])
            latency[name].append((time.perf_counter() - started) * 1000)
    reference = labels.get("torch")
    onnx_fp32 = len(photos.labels) / min(seconds["onnx"]) if "onnx" in seconds else None
    print(
        f"\n{len(photos.labels)} {photos.split} photos, batches of {args.batch_size}, best of {args.rounds} passes "
        f"in turns; one photo: median of {args.repeats}"
    )
    print(f"| engine | images/s | x ONNX fp32 | one photo (ms) | {photos.split} accuracy | agreement with torch fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in predictors:
        rate = len(photos.labels) / min(seconds[name])
        accuracy = float((labels[name] == photos.labels).mean())
        agreement = f"{float((labels[name] == reference).mean()):.2%}" if reference is not None else "-"
        ratio = f"{rate / onnx_fp32:.2f}" if onnx_fp32 else "-"
        print(
            f"| {name} | {rate:.1f} | {ratio} | {statistics.median(latency[name]):.1f} | {accuracy:.2%} | {agreement} |"
        )


def engine(run: Path, name: str):
    """A predictor for one engine of `run`: PyTorch at a precision, or a verified export."""
    if name.startswith("torch"):
        return Predictor(run, device="cpu", precision="bf16" if name.endswith("bf16") else "fp32")
    format, _, precision = name.partition("-")
    path = exporting.default_path(RunDir(run), format, precision or "fp32")
    if not any(found == path for found, _ in exporting.verified_exports(RunDir(run))):
        print(f"{name}: exporting and checking ...", flush=True)
        exporting.export(run, format, int8=precision == "int8", bf16=precision == "bf16", progress=False)
    return open_predictor(path)


if __name__ == "__main__":
    main()
