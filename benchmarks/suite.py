"""The photo-set suite: candidate models and strategies on every real photo set at hand.

Each candidate trains once per set through the real CLI (the set's own split: grouped for
the weather photos, the given train/validation/test for clothing_small). `weather@128` and
`clothing_small@128` are the same photos shrunk to at most 128 px a side (written to a
temporary folder, the originals untouched): small photos, as some users have. `digits` is no
photo set but real all the same, and far from ImageNet: scikit-learn's 1,797 scanned 8x8
handwritten digits, written to an .npz and split by photoclass; a check that a default chosen
on photos does not fail elsewhere (`--sets weather clothing_small digits`). It prints one row
per set and candidate (test accuracy with its 95% Wilson interval, seconds, peak memory) and
each candidate's mean over the sets, the figure a default is chosen by.

    python benchmarks/suite.py --seeds 0 1 2
    python benchmarks/suite.py --candidates efficientnet-lite0-ms:features:epochs efficientnet-lite2-ms:features

A candidate is MODEL:STRATEGY[:HEAD_SOLVER[:SIZE]]: HEAD_SOLVER lbfgs (the default) or epochs;
SIZE an --image-size in px, or `model` (the model's own, the default) or `auto`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "weather": SHARED / "weather",
    "clothing_small": SHARED / "clothing_small",
    "digits": None,
    "weather@128": SHARED / "weather",
    "clothing_small@128": SHARED / "clothing_small",
}
PHOTO_SETS = ["weather", "clothing_small"]
CANDIDATES = [
    "efficientnet-lite2-ms:features:lbfgs",
    "efficientnet-lite2-ms:features:epochs",
    "efficientnet-lite0-ms:features:lbfgs",
    "efficientnet-lite0-ms:features:epochs",
]


def run(data: Path, out: Path, candidate: str, seed: int, cache: Path) -> dict:
    parts = candidate.split(":")
    model, strategy = parts[:2]
    solver, size = (parts[2] if len(parts) > 2 else "lbfgs"), (parts[3] if len(parts) > 3 else "model")
    command = [
        sys.executable,
        "-m",
        "photoclass",
        "train",
        str(data),
        "--out",
        str(out),
        "--model",
        model,
        "--strategy",
        strategy,
        "--head-solver",
        solver,
        "--seed",
        str(seed),
        "--no-track",
        "--cache-dir",
        str(cache),
    ] + ([] if size == "model" else ["--image-size", size])
    timed = (
        ["/usr/bin/time", "-f", "peak %M KB"] + command
        if shutil.which("time") or Path("/usr/bin/time").exists()
        else command
    )
    started = time.perf_counter()
    result = subprocess.run(timed, capture_output=True, text=True)
    seconds = time.perf_counter() - started  # the whole command: start-up, data, training, test, report
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    peak = next((int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak ")), 0)
    test = json.loads((out / "test.json").read_text())
    return {
        "accuracy": test["test"]["accuracy"],
        "interval": test["test"]["accuracy_interval"],
        "photos": test["test"]["count"],
        "seconds": seconds,
        "peak_gb": peak / 2**20,
    }


def shrunk(source: Path, folder: Path, side: int = 128) -> Path:
    """A copy of the photo set at `source` with every photo at most `side` px a side (file
    names and folders kept, so are labels and given splits)."""
    from PIL import Image

    if folder.exists():
        return folder
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                image = image.convert("RGB")
                image.thumbnail((side, side), Image.Resampling.LANCZOS)
                image.save(target.with_suffix(".png"))  # lossless: the size alone changes
    return folder


def digits_npz(folder: Path) -> Path:
    """scikit-learn's 8x8 digits (0..16) as uint8 images in one pool, with class names."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "digits.npz",
        x=(digits.images * 255 / 16).round().astype(np.uint8),
        y=digits.target,
        class_names=np.array([str(d) for d in range(10)]),
    )
    return folder / "digits.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES, help="model:strategy pairs")
    parser.add_argument("--sets", nargs="+", default=PHOTO_SETS, choices=list(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[float]] = {}
    print(
        f"{'set':<16}{'candidate':<40}{'seed':>5}{'test acc':>9}  {'95% interval':<15}{'photos':>7}{'s':>7}"
        f"{'peak GB':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sets:
            data = (
                shrunk(SETS[name], tmp / name.replace("@", "-"))
                if "@" in name
                else SETS[name] or digits_npz(tmp / "digits")
            )
            for candidate in args.candidates:
                for seed in args.seeds:
                    r = run(data, tmp / f"{name}-{candidate.replace(':', '-')}-{seed}", candidate, seed, tmp / "cache")
                    rows.setdefault((candidate, name), []).append(r["accuracy"])
                    print(
                        f"{name:<16}{candidate:<40}{seed:>5}{r['accuracy']:>9.4f}  {r['interval'][0]:.3f}-"
                        f"{r['interval'][1]:.3f}{'':<4}{r['photos']:>7}{r['seconds']:>7.1f}{r['peak_gb']:>9.2f}",
                        flush=True,
                    )
    print("\nmean over the seeds, and over the sets (the suite mean):")
    for candidate in args.candidates:
        means = {name: sum(rows[candidate, name]) / len(rows[candidate, name]) for name in args.sets}
        print(
            f"  {candidate:<40}"
            + "".join(f"{name} {m:.4f}  " for name, m in means.items())
            + f"suite {sum(means.values()) / len(means):.4f}"
        )


if __name__ == "__main__":
    main()
