"""Near-duplicate grouping on generated fingerprints, up to a million photos.

    python benchmarks/dedupe_scale.py                     # 10,000 to 1,000,000
    python benchmarks/dedupe_scale.py --sizes 100000 --exact  # also the exact search

Each generated photo has a random 64-bit hash and a smooth 16x16 colour thumbnail (a random
3x3 grid of colours around a random brightness, upsampled, plus noise). One photo in fifty
gets a near copy: a few hash bits flipped and its thumbnail shifted by a few grey levels, the
way a re-encoded or lightly edited photo differs. For each size it prints the seconds, the peak
memory added (tracemalloc, numpy and scipy arrays), the groups found and whether every planted
pair was found, by the banded search that `prepare` uses past 20,000 photos. `--exact` also
times the exact search (each photo against all of similar brightness) on the same
fingerprints and says whether the groups are the same.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from photoclass.data.dedupe import find_duplicates


GRID, SPREAD = 5, 70  # unrelated pairs then differ about as weather's do: 0.1% of pairs within 25, 1% within 32


def generate(n: int, seed: int = 0, copies_every: int = 50):
    """(keys, hashes, thumbs, planted pairs) for n photos, built in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64)
    thumbs = np.empty((n, 16 * 16 * 3), np.uint8)
    up = np.linspace(0, GRID - 1, 16)
    lo = np.floor(up).clip(0, GRID - 2).astype(int)
    w = up - lo
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        grid = rng.uniform(0, 255, (m, 1, 1, 1)) + rng.normal(0, SPREAD, (m, GRID, GRID, 3))
        rows = grid[:, lo] * (1 - w)[None, :, None, None] + grid[:, lo + 1] * w[None, :, None, None]
        field = rows[:, :, lo] * (1 - w)[None, None, :, None] + rows[:, :, lo + 1] * w[None, None, :, None]
        field += rng.normal(0, 6, field.shape)
        thumbs[start : start + m] = field.clip(0, 255).astype(np.uint8).reshape(m, -1)
    originals = np.arange(0, n - 1, copies_every)
    copies = originals + 1
    flips = rng.integers(0, 64, (len(copies), 6)).astype(np.uint64)
    hashes[copies] = hashes[originals]
    for k in range(flips.shape[1]):
        hashes[copies] ^= np.uint64(1) << flips[:, k]
    shift = rng.integers(-5, 6, (len(copies), 1))
    thumbs[copies] = (thumbs[originals].astype(np.int16) + shift).clip(0, 255).astype(np.uint8)
    keys = [f"{i:08x}" for i in range(n)]
    return keys, hashes, thumbs, np.stack([originals, copies], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--exact", action="store_true", help="also time the exact search, and compare groups")
    args = parser.parse_args()
    print(
        f"{'photos':>9} {'method':>18} {'seconds':>8} {'us/photo':>9} {'peak MB':>8} "
        f"{'groups':>7} {'planted found':>14}"
    )
    for n in args.sizes:
        keys, hashes, thumbs, planted = generate(n)
        tracemalloc.start()
        t = time.perf_counter()
        groups = find_duplicates(keys, hashes, thumbs, method="bands")
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        found = int((groups.group[planted[:, 0]] == groups.group[planted[:, 1]]).sum())
        print(
            f"{n:>9,} {'bands':>18} {seconds:>8.1f} {seconds / n * 1e6:>9.1f} {peak:>8.0f} "
            f"{groups.count:>7,} {found:>7,}/{len(planted):,}",
            flush=True,
        )
        if args.exact:
            t = time.perf_counter()
            exact = find_duplicates(keys, hashes, thumbs, method="exact")
            seconds = time.perf_counter() - t
            same = (
                "same groups"
                if np.array_equal(exact.group, groups.group)
                else f"{exact.count:,} groups, {(exact.group != groups.group).sum():,} photos differ"
            )
            print(f"{n:>9,} {'exact':>18} {seconds:>8.1f} {seconds / n * 1e6:>9.1f} {'':>8} {same}", flush=True)


if __name__ == "__main__":
    main()
