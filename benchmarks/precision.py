"""bf16 against fp32 on this CPU, stage by stage: feature extraction, prediction, training.

    python benchmarks/precision.py                      # weather and clothing_small, the default model
    python benchmarks/precision.py --data DIR --model efficientnet-lite0-ms

For each photo set it trains the default command twice (`--precision fp32`, `--precision
bf16`) and reports, for each stage:
- feature extraction: seconds over every photo as `train` encodes them, by PyTorch and by
  OpenVINO (what `train --precision bf16` uses where it is installed), fp32 and bf16, in
  turns, whole passes, the faster of two each;
- training: the whole run's seconds and its test accuracy (95% interval);
- prediction: each trained run predicting its test photos in fp32 and in bf16 (PyTorch), the
  agreement of every variant with the fp32 run in fp32, and images/s.
photoclass's `--precision auto` keeps cached features in fp32 by these figures, and trains on
pixels in bf16 where this CPU has it natively; the script says whether this one does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import photoclass
from photoclass.core.device import memory_format, native_bf16
from photoclass.core.torchsetup import setup_torch
from photoclass.inference.predictor import Predictor
from photoclass.inference.verify import run_photos
from photoclass.models.registry import create_model, model_info
from photoclass.runs.rundir import RunDir
from photoclass.training.features import extract_features, lowered
from photoclass.data.loader import BatchLoader

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[SHARED / "weather", SHARED / "clothing_small"])
    parser.add_argument("--model", default=photoclass.TrainConfig.model)
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    setup_torch(0, 0)  # as train does: without it glibc's page faults slowed PyTorch's extraction by a third
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: "
        f"{native_bf16()}, {torch.get_num_threads()} threads, model {args.model}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for data in args.data:
            measure(data, args.model, out / data.name)


def measure(data: Path, model: str, out: Path) -> None:
    print(f"\n## {data.name}")
    timed_extraction(data, model)
    runs = {}
    for precision in ("fp32", "bf16"):
        started = time.perf_counter()
        result = photoclass.train(
            data, model=model, out=out / precision, precision=precision, verbose=False, progress=False, track=False
        )
        runs[precision] = result.run.path
        low, high = result.test["accuracy_interval"]
        print(
            f"train --precision {precision}: {time.perf_counter() - started:.1f} s, test accuracy "
            f"{result.test['accuracy']:.2%} ({low:.1%}-{high:.1%}) of {result.test['count']}"
        )
    photos = run_photos(RunDir(runs["fp32"]), model_info(model).input_spec.size)
    reference = None
    print(f"prediction on {len(photos.labels)} {photos.split} photos (PyTorch, batch 16):")
    print(f"  {'trained':<8}{'predicted':<10}{'accuracy':>10}{'agreement':>11}{'unknown agr.':>14}{'images/s':>10}")
    for trained, path in runs.items():
        for precision in ("fp32", "bf16"):
            predictor = Predictor(path, device="cpu", precision=precision)
            logits, scores, seconds = _predict(predictor, photos.pixels)
            unknown = scores > predictor.threshold if scores is not None else None
            if reference is None:
                reference = logits.argmax(1), unknown
            agreement = float((logits.argmax(1) == reference[0]).mean())
            unknown_agreement = f"{float((unknown == reference[1]).mean()):.2%}" if unknown is not None else "-"
            accuracy = float((logits.argmax(1) == photos.labels).mean())
            print(
                f"  {trained:<8}{precision:<10}{accuracy:>10.2%}{agreement:>11.2%}{unknown_agreement:>14}"
                f"{len(photos.labels) / seconds:>10.1f}"
            )


def timed_extraction(data: Path, model: str, rounds: int = 2) -> None:
    """Seconds to encode every photo as `train` does (BatchNorm folded, channels-last, batches
    of 16), by PyTorch and by OpenVINO (where installed), fp32 and bf16, in turns, whole
    passes; the faster of `rounds` each."""
    info = model_info(model)
    dataset = photoclass.prepare(data, image_size=info.input_spec.size, progress=False)
    net = create_model(model, len(dataset.classes)).eval().to(memory_format=memory_format("cpu"))  # as train's
    loader = BatchLoader(
        dataset.images,
        dataset.labels,
        np.arange(len(dataset)),
        batch_size=16,
        mean=info.input_spec.mean,
        std=info.input_spec.std,
    )
    encoders = {}
    for engine in ("torch", "openvino"):
        os.environ["PHOTOCLASS_ENCODER"] = engine
        for p in ("fp32", "bf16"):
            encode = lowered(net.split_for_training(0)[0], p)
            if engine == "openvino" and getattr(encode, "engine", None) != "openvino":
                break  # OpenVINO is not installed
            encoders[engine, p] = encode
    os.environ.pop("PHOTOCLASS_ENCODER")
    seconds, features = {k: [] for k in encoders}, {}
    for _ in range(rounds):
        for (engine, precision), encode in encoders.items():
            started = time.perf_counter()
            features[engine, precision] = extract_features(encode, loader, precision=precision, progress=False)
            seconds[engine, precision].append(time.perf_counter() - started)
    base = min(seconds["torch", "fp32"])
    print(f"feature extraction, {len(dataset)} photos (seconds, and as a share of PyTorch fp32's):")
    for (engine, precision), spent in seconds.items():
        cosine = torch.nn.functional.cosine_similarity(features["torch", "fp32"], features[engine, precision]).min()
        print(
            f"  {engine:8} {precision}: {min(spent):6.1f} s ({min(spent) / base:.2f}); least cosine similarity "
            f"of a photo's features to PyTorch fp32's {cosine:.6f}"
        )
    if ("openvino", "fp32") in seconds:
        ratio = min(seconds["openvino", "bf16"]) / min(seconds["openvino", "fp32"])
        print(f"  bf16/fp32 = {min(seconds['torch', 'bf16']) / base:.2f} (PyTorch), {ratio:.2f} (OpenVINO)")


def _predict(predictor: Predictor, pixels: np.ndarray, batch: int = 16):
    predictor.outputs(pixels[:batch])  # warm-up
    logits, scores = [], []
    started = time.perf_counter()
    for start in range(0, len(pixels), batch):
        found = predictor.outputs(pixels[start : start + batch])
        logits.append(found[0])
        scores.append(found[1])
    seconds = time.perf_counter() - started
    return np.concatenate(logits), (np.concatenate(scores) if scores[0] is not None else None), seconds


if __name__ == "__main__":
    main()
