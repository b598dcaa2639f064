"""Training speed per model: images/s and seconds per epoch over the weather training split.

    python benchmarks/train_speed.py                      # every registered model
    python benchmarks/train_speed.py seed-baseline --epochs 3

Each model trains as `photoclass train` does (AdamW, default augmentation, batch 32,
channels_last, all cores) after three warm-up steps; the figure is the median epoch.
Target: one seed-baseline epoch in at most 4 s (Keras/TensorFlow: about 8 s here).
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch
from torch import nn

import photoclass
from photoclass.data.augment import parse_augment
from photoclass.data.loader import BatchLoader
from photoclass.models import count_parameters, create_model, list_models, model_info
from photoclass.training.loop import train_one_epoch
from photoclass.core.torchsetup import setup_torch

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"


def epoch_seconds(name: str, data: Path, epochs: int, batch_size: int, channels_last: bool) -> dict:
    size = model_info(name).input_spec.size
    dataset = photoclass.prepare(data, image_size=size, progress=False)
    model = create_model(name, len(dataset.classes))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    spec = model.input_spec
    loader = BatchLoader(
        dataset.images,
        dataset.labels,
        dataset.indices("train"),
        batch_size=batch_size,
        mean=spec.mean,
        std=spec.std,
        augment=parse_augment("default"),
        shuffle=True,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    warm = BatchLoader(
        dataset.images,
        dataset.labels,
        dataset.indices("train")[: 3 * batch_size],
        batch_size=batch_size,
        mean=spec.mean,
        std=spec.std,
    )
    train_one_epoch(model, warm, optimizer, loss_fn, seed=0, progress=False)
    runs = [train_one_epoch(model, loader, optimizer, loss_fn, seed=e, progress=False) for e in range(epochs)]
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "model": name,
        "input": size,
        "params": count_parameters(model),
        "images": runs[0]["images"],
        "seconds": seconds,
        "images_per_s": runs[0]["images"] / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="default: every registered model")
    parser.add_argument("--data", type=Path, default=WEATHER)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-channels-last", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no photos at {args.data}; pass --data DIR")
    setup_torch(0, 0)
    names = args.models or [m.name for m in list_models()]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"batch {args.batch_size}, channels_last {not args.no_channels_last}"
    )
    print(f"{'model':<16}{'input':>6}{'params':>12}{'images':>8}{'s/epoch':>9}{'images/s':>10}")
    for name in names:
        r = epoch_seconds(name, args.data, args.epochs, args.batch_size, not args.no_channels_last)
        print(
            f"{r['model']:<16}{r['input']:>6}{r['params']:>12,}{r['images']:>8}{r['seconds']:>9.2f}"
            f"{r['images_per_s']:>10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
