"""Every engine of a trained run, side by side on the same photos: images/s, latency, accuracy.

    python benchmarks/inference.py RUN [--engines torch,onnx,openvino-bf16] [--isa avx2]

Engines: PyTorch in fp32 and bf16 (BatchNorm folded, channels-last), and the run's verified
exports (`photoclass export`; made here when missing, and skipped with the reason when the
export is refused or its runtime is not installed): ONNX Runtime fp32 and INT8, OpenVINO
fp32, bf16 (CPUs with native bf16) and INT8, LiteRT fp32 and INT8. All run on the run's own
test photos, decoded once (decoding is not timed), in batches of 32 taken in turns engine
after engine, so each sees the same machine; then one photo at a time for the latency. Agreement: the share of photos
given the same class as PyTorch fp32. Then each export's own check, as stored in it: the photos it was
judged on (all but those that calibrated it), its agreement and its test figure beside PyTorch's.
`--isa avx2` runs it all as on an AVX2-only CPU (oneDNN, OpenVINO and PyTorch capped; ONNX Runtime
and LiteRT have no cap), exporting under the cap what is missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from photoclass.core.cpu import describe_cpu
from photoclass.core.device import native_bf16
from photoclass.core.errors import PhotoclassError
from photoclass.inference import export as exporting
from photoclass.inference.predictor import Predictor, file_for_run, open_predictor
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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the photos, in turns")
    parser.add_argument("--repeats", type=int, default=30, help="single-photo timings per engine")
    parser.add_argument("--isa", choices=("avx2",), help="emulate a CPU with this instruction set at most")
    args = parser.parse_args()
    if args.isa and os.environ.get("ONEDNN_MAX_CPU_ISA") != args.isa.upper():  # read once, when each library loads
        caps = {
            "ONEDNN_MAX_CPU_ISA": args.isa.upper(),
            "OV_CPU_MAX_ISA": args.isa.upper(),
            "ATEN_CPU_CAPABILITY": args.isa,
        }
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **caps})
    print(
        f"run {args.run}; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {native_bf16()}, {torch.get_num_threads()} threads\n{describe_cpu()}"
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
    checks(args.run)
    chosen, picked = file_for_run(args.run, "auto")
    print(f"\n--engine auto runs {chosen} ({picked.title}) here")


def checks(run: Path) -> None:
    """Each verified export's own check, as stored in it."""
    print("\n| export | checked on | photos judged | agreement | 'none of these' agreement | test figure (PyTorch) |")
    print("|---|---|---:|---:|---:|---|")
    for path, found in exporting.verified_exports(RunDir(run)):
        figure = found.get("figure", "accuracy")
        counts = ", ".join(f"{k} {v}" for k, v in found.get("judged_on", {found["split"]: found["photos"]}).items())
        unknown = f"{found['unknown_agreement']:.2%}" if "unknown_agreement" in found else "-"
        print(
            f"| {path.relative_to(run)} | {found.get('cpu', '?')} | {found['photos']} ({counts}) | "
            f"{found['agreement']:.2%} | {unknown} | {found[figure]:.2%} ({found[f'{figure}_torch']:.2%}) |"
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
