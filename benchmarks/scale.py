"""Training and inference speed per device and process count, through the real CLI.

For each device and process count (1: one process with every core; N > 1: torchrun with one
core's worth of threads each), and each model:strategy, it trains a few epochs on the data
and prints training images/s (mean over the epochs after the first), then the default
model's time to its accuracy (the whole `photoclass train`, data to report) and inference
images/s on the test photos.

    python benchmarks/scale.py                                 # this machine's device, 1 and 2 processes
    python benchmarks/scale.py --device cuda --nproc 1 2 4     # on a machine with GPUs
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT.parent / "shared" / "data" / "weather"


def train(data: Path, out: Path, *, nproc: int, device: str, extra: list[str]) -> float:
    """Seconds for one `photoclass train` (all of it), with `nproc` processes."""
    command = [
        sys.executable,
        "-m",
        "photoclass",
        "train",
        str(data),
        "--out",
        str(out),
        "--device",
        device,
        "--no-track",
        "--cache-dir",
        str(out.parent / "cache"),
        *extra,
    ]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def images_per_s(run: Path) -> float:
    rows = list(csv.DictReader(open(run / "timing.csv")))
    later = rows[1:] or rows  # the first epoch also warms up
    return sum(float(r["images_per_s"]) for r in later) / len(later)


def inference_images_per_s(run: Path, device: str) -> float:
    from photoclass.inference.predictor import open_predictor

    photos = [
        str(Path(json.loads((run / "config.json").read_text())["data"]) / r["path"])
        for r in csv.DictReader(open(run / "split.csv"))
        if r["split"] == "test" and r["status"] == "ok"
    ]
    predictor = open_predictor(run, engine="torch", device=device, batch_size=32)
    predictor.predict(photos[:32], progress=False)  # warm-up
    started = time.perf_counter()
    predictor.predict(photos, progress=False)
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=WEATHER)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["seed-baseline:scratch", "efficientnet-lite0-ms:lpft"],
        help="model:strategy pairs whose training speed is measured",
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs per throughput run (default: %(default)s)")
    args = parser.parse_args()

    import torch

    from photoclass.core.device import resolve_device

    device = str(resolve_device(args.device))
    print(
        f"torch {torch.__version__}, device {device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if device.startswith('cuda') else ''}, data {args.data}"
    )
    print(
        f"{'device':<8}{'procs':>6}  {'model:strategy':<30}{'train img/s':>12}{'s/run':>8}"
        f"{'test acc':>10}{'infer img/s':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for nproc in args.nproc:
            for pair in args.models:
                model, strategy = pair.split(":")
                extra = [
                    "--model",
                    model,
                    "--strategy",
                    strategy,
                    "--epochs",
                    str(args.epochs),
                    "--early-stopping",
                    "0",
                ]
                if strategy == "lpft":  # one head epoch, then the whole network: that is the speed that matters
                    extra = [
                        "--model",
                        model,
                        "--strategy",
                        strategy,
                        "--epochs",
                        "1",
                        "--finetune-epochs",
                        str(args.epochs),
                        "--early-stopping",
                        "0",
                    ]
                run = tmp / f"{model}-{strategy}-{nproc}"
                seconds = train(args.data, run, nproc=nproc, device=args.device, extra=extra)
                speed = images_per_s(run)  # lpft: its fine-tuning epochs (the first row is the head's)
                print(f"{device:<8}{nproc:>6}  {pair:<30}{speed:>12.1f}{seconds:>8.1f}{'':>10}{'':>12}", flush=True)
            run = tmp / f"default-{nproc}"
            seconds = train(args.data, run, nproc=nproc, device=args.device, extra=[])
            accuracy = json.loads((run / "test.json").read_text())["test"]["accuracy"]
            infer = inference_images_per_s(run, args.device)
            print(
                f"{device:<8}{nproc:>6}  {'default (to its accuracy)':<30}{'':>12}{seconds:>8.1f}{accuracy:>10.4f}"
                f"{infer:>12.1f}",
                flush=True,
            )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
