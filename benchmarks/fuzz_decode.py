"""Fuzz the one decode function with mutated images; print what happened to each.

    python benchmarks/fuzz_decode.py [--inputs 100000] [--workers 2] [--seed 0]

Seeds are small JPEG (baseline, progressive, EXIF-rotated), PNG (RGB, palette, RGBA,
16-bit), GIF (animated), WebP, TIFF and BMP files; each input is one seed after 1-4 random
mutations (bit flips, overwritten, inserted or deleted bytes, duplicated chunks, truncation,
extreme 16/32-bit values where sizes live, splices of two seeds). Every input must either
decode or raise DecodeError; any other exception, an input over 2 s, or one that raises the
worker's peak memory by over 200 MB is a failure, saved under --crashes for replay.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import sys
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from photoclass.data.decode import DecodeError, decode_photo  # noqa: E402

MAX_SECONDS = 2.0
MAX_EXTRA_MB = 200


def seed_images() -> list[bytes]:
    """One small file per format and mode the decoder meets in the wild."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:56]
    rgb = np.stack([x * 4, y * 6, (x + y) * 2], -1).astype(np.uint8)
    rgb[10:20, 5:30] = rng.integers(0, 256, 3)
    image = Image.fromarray(rgb)
    out = []

    def save(im, fmt, **kw):
        buffer = io.BytesIO()
        im.save(buffer, format=fmt, **kw)
        out.append(buffer.getvalue())

    save(image, "JPEG", quality=80)
    save(image, "JPEG", quality=60, progressive=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    save(image, "JPEG", exif=exif.tobytes())
    save(image, "PNG")
    save(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")
    save(image.convert("RGBA"), "PNG")
    save(Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), "PNG")
    frames = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    save(image, "WEBP", quality=70)
    save(image, "TIFF")
    save(image.convert("CMYK"), "TIFF", compression="tiff_lzw")
    save(image, "BMP")
    return out


def mutate(data: bytes, rng: random.Random, seeds: list[bytes] | None = None) -> bytes:
    """`data` after 1-4 random mutations."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        pos = rng.randrange(len(b)) if b else 0
        if kind == 0 and b:  # flip bits
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == 1 and b:  # overwrite bytes
            for i in range(pos, min(len(b), pos + rng.randint(1, 16))):
                b[i] = rng.randrange(256)
        elif kind == 2:  # insert bytes
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == 3 and len(b) > 1:  # delete a range
            del b[pos : pos + rng.randint(1, max(1, len(b) // 8))]
        elif kind == 4 and b:  # duplicate a chunk
            chunk = b[pos : pos + rng.randint(1, 256)]
            at = rng.randrange(len(b))
            b[at:at] = chunk
        elif kind == 5 and len(b) > 8:  # truncate
            del b[rng.randrange(8, len(b)) :]
        elif kind == 6 and len(b) > 4:  # an extreme size-like value
            value = rng.choice([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 65500, 100000])
            width = rng.choice([2, 4])
            at = rng.randrange(len(b) - width)
            b[at : at + width] = (value & (256**width - 1)).to_bytes(width, rng.choice(["big", "little"]))
        elif kind == 7 and seeds:  # splice with another seed
            other = rng.choice(seeds)
            b = b[:pos] + bytearray(other[rng.randrange(len(other)) :])
    return bytes(b)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(job: tuple[int, int, str]) -> tuple[str, float, str]:
    """(outcome, seconds, detail) for input `index` of the campaign seeded `seed`."""
    index, seed, crashes = job
    rng = random.Random(seed * 1_000_003 + index)
    seeds = _SEEDS
    data = mutate(rng.choice(seeds), rng, seeds)
    before = _peak_mb()
    started = time.perf_counter()
    try:
        decode_photo(data, size=rng.choice([None, 64, 224]))
        outcome, detail = "decoded", ""
    except DecodeError as e:
        outcome, detail = "skipped", e.reason.split(":")[0][:60]
    except Exception as e:  # a bug: anything but DecodeError escaping
        outcome, detail = "crash", f"{type(e).__name__}: {str(e)[:80]}"
    seconds = time.perf_counter() - started
    if outcome != "crash" and seconds > MAX_SECONDS:
        outcome, detail = "slow", f"{seconds:.2f} s"
    elif outcome != "crash" and _peak_mb() - before > MAX_EXTRA_MB:
        outcome, detail = "memory", f"+{_peak_mb() - before:.0f} MB"
    if outcome in ("crash", "slow", "memory") and crashes:
        Path(crashes).mkdir(parents=True, exist_ok=True)
        Path(crashes, f"{outcome}-{seed}-{index}.bin").write_bytes(data)
    return outcome, seconds, detail


_SEEDS: list[bytes] = []


def _init() -> None:
    _SEEDS.extend(seed_images())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crashes", default="fuzz-crashes", help="folder for failing inputs")
    args = parser.parse_args()

    outcomes, reasons, failures = Counter(), Counter(), []
    slowest = 0.0
    started = time.perf_counter()
    with Pool(args.workers, initializer=_init) as pool:
        jobs = ((i, args.seed, args.crashes) for i in range(args.inputs))
        for i, (outcome, seconds, detail) in enumerate(pool.imap_unordered(_run, jobs, chunksize=64)):
            outcomes[outcome] += 1
            slowest = max(slowest, seconds)
            if outcome == "skipped":
                reasons[detail] += 1
            elif outcome != "decoded":
                failures.append(f"{outcome}: {detail}")
            if (i + 1) % 10_000 == 0:
                print(f"  {i + 1:,} inputs, {time.perf_counter() - started:.0f} s", flush=True)
    total = time.perf_counter() - started
    print(f"{args.inputs:,} mutated images in {total:.0f} s ({args.inputs / total:.0f}/s, {args.workers} workers)")
    print(
        f"decoded {outcomes['decoded']:,}, skipped with a reason {outcomes['skipped']:,}, "
        f"uncaught exceptions {outcomes['crash']}, over {MAX_SECONDS:.0f} s {outcomes['slow']}, "
        f"over {MAX_EXTRA_MB} MB {outcomes['memory']}; slowest input {slowest * 1000:.0f} ms"
    )
    print("most common skip reasons:")
    for reason, count in reasons.most_common(8):
        print(f"  {count:>7,}  {reason}")
    for line in failures[:20]:
        print(f"  FAIL {line}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
