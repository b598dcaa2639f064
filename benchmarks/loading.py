"""Ways of feeding one training epoch, the course's question: images/s and time to the first batch.

    python benchmarks/loading.py                      # the weather photos, then 20,000 synthetic ones
    python benchmarks/loading.py --synthetic 0        # the weather photos only

For each set, one epoch of shuffled, augmented (default spec), normalized 224-px batches of
32, as `photoclass train --strategy scratch` consumes them, is produced:

  decode    every photo decoded again each epoch, in 1 or 2 worker processes (Keras's
            ImageDataGenerator.flow_from_directory, a PyTorch DataLoader over files);
  raw       photoclass's decode cache, `--pixel-cache raw`: uint8 pixels read from
            memory-mapped pack files;
  jpeg      the same, `--pixel-cache jpeg` (the default past 2 GiB of pixels): each photo a
            JPEG (quality 95) at the model's size, decoded in threads a batch ahead;
  RAM       the same pixels held in memory as one array (what photoclass does for splits
            under 1 GB, and what `keras.datasets` arrays are).

"Workers" are decoding processes for `decode` and torch threads (and, for jpeg, decoding
threads) for the others. The cache is filled first (not timed: that is
`prepare`'s cost, benchmarks/ingest.py). Nothing is trained: these are the rates a loader can
feed; a model slower than them never waits.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from ingest import WEATHER, synthetic_folder  # noqa: E402

from photoclass.config import parse_augment  # noqa: E402
from photoclass.data import loader as loader_module  # noqa: E402
from photoclass.data.augment import augment_batch  # noqa: E402
from photoclass.data.decode import decode_photo  # noqa: E402
from photoclass.data.loader import BatchLoader, normalize, to_float  # noqa: E402
from photoclass.data.prepare import prepare  # noqa: E402

SIZE, BATCH = 224, 32
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _decode(path: str) -> np.ndarray:
    return decode_photo(path, size=SIZE).to_array()


def decode_epoch(paths: list[str], workers: int, seed: int = 0):
    """Batches decoded from the files, `workers` processes ahead of the consumer."""
    order = np.random.default_rng(seed).permutation(len(paths))
    spec, generator = parse_augment("default"), torch.Generator().manual_seed(seed)
    with get_context("fork").Pool(workers) as pool:
        batches = (order[i : i + BATCH].tolist() for i in range(0, len(order), BATCH))
        for pixels in pool.imap(_decode_batch, ([paths[j] for j in b] for b in batches)):
            x = augment_batch(to_float(torch.from_numpy(pixels)), spec, generator)
            yield normalize(x, MEAN, STD)


def _decode_batch(paths: list[str]) -> np.ndarray:
    return np.stack([_decode(p) for p in paths])


def loader_epoch(images, labels, preload: bool, seed: int = 0):
    limit = loader_module.PRELOAD_LIMIT_BYTES
    loader_module.PRELOAD_LIMIT_BYTES = limit if preload else 0  # 0: stay memory-mapped
    try:
        loader = BatchLoader(
            images,
            labels,
            np.arange(len(labels)),
            batch_size=BATCH,
            mean=MEAN,
            std=STD,
            augment=parse_augment("default"),
            shuffle=True,
        )
    finally:
        loader_module.PRELOAD_LIMIT_BYTES = limit
    yield from (x for x, _ in loader.batches(seed))


def timed(epoch) -> tuple[float, float, int]:
    """(seconds to the first batch, seconds for the epoch, images)."""
    started = time.perf_counter()
    first, count = None, 0
    for x in epoch:
        count += len(x)
        if first is None:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started, count


def pack_bytes(cache: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in cache.rglob(f"*{suffix}*"))


def bench(name: str, folder: Path, cache: Path) -> None:
    data = prepare(folder, image_size=SIZE, cache_dir=cache, progress=False, pixel_cache="raw")
    compact = prepare(folder, image_size=SIZE, cache_dir=cache, progress=False, pixel_cache="jpeg")
    paths = [str(p) for p in data.paths()]
    in_ram = np.ascontiguousarray(data.images[np.arange(len(data))])
    print(f"\n{name}: {len(paths):,} photos, {SIZE} px, batches of {BATCH}, default augmentation")
    print(
        f"cache on disk: raw {pack_bytes(cache, '.u8') / len(paths) / 1024:.0f} KB a photo, "
        f"jpeg {pack_bytes(cache, '.jpgs') / len(paths) / 1024:.0f} KB a photo"
    )
    print(f"{'way':<10}{'workers':>8}{'first batch s':>15}{'epoch s':>10}{'images/s':>10}")
    for workers in (1, 2):
        torch.set_num_threads(workers)
        compact.images.threads = workers
        runs = [
            ("decode", lambda: decode_epoch(paths, workers)),
            ("raw", lambda: loader_epoch(data.images, data.labels, preload=False)),
            ("jpeg", lambda: loader_epoch(compact.images, compact.labels, preload=False)),
            ("RAM", lambda: loader_epoch(in_ram, data.labels, preload=True)),
        ]
        for way, epoch in runs:
            first, seconds, count = timed(epoch())
            print(f"{way:<10}{workers:>8}{first:>15.3f}{seconds:>10.1f}{count / seconds:>10.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=20000, help="synthetic photos (0: none)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "photoclass-bench")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}")
    bench("weather", WEATHER, args.work_dir / "cache")
    if args.synthetic:
        bench(f"synthetic-{args.synthetic}", synthetic_folder(args.synthetic, args.work_dir), args.work_dir / "cache")


if __name__ == "__main__":
    main()
