"""The "none of these" threshold of the default command, read off two references side by side.

    python benchmarks/unknown_threshold.py [--seeds 0] [--sets weather,clothing,given,given-later]
                                           [--max-outsiders N] [--work DIR]

For each data set it trains the default model (`photoclass.train(DATA)`), then predicts the
run's validation and test photos and a set of outsiders, and reports, for the threshold the
run saved (the validation photos and every training photo scored against the others outside
its duplicate group) and for the threshold photoclass used before (the 97.5% quantile of the
validation photos alone), the share of test photos accepted and of outsiders flagged, each
with its 95% Wilson interval.

The sets: `weather` (flat, labels in file names; outsiders: the clothing photos), `clothing`
(given train/validation/test; outsiders: the weather photos), and `given` and `given-later`,
made here as a small user's folder would be: train/ and val/ folders of two weather classes
(cloudy, sunrise: 122 and 76 photos each, like 244 and 153 ants and bees; photoclass tests
on val/ and validates on a part of train/), outsiders: the clothing photos. Each set is the other's outsiders (shared/data).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import photoclass
from photoclass.evaluation.stats import wilson_interval

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WEATHER, CLOTHING = SHARED / "weather", SHARED / "clothing_small"


def given_folder(root: Path, *, later: bool = False) -> Path:
    """train/ and val/ of two weather classes, copied (the shared folder is never written): the
    photos drawn at random (seed 0), or with `later` val/ holding the higher-numbered photos
    (the set's photos came in batches, so val/ then differs from train/ as a later shoot would)."""
    folder = root / ("given-later" if later else "given")
    if folder.exists():
        return folder
    for cls in ("cloudy", "sunrise"):
        photos = sorted(WEATHER.glob(f"{cls}*"), key=lambda p: int("".join(filter(str.isdigit, p.stem)) or 0))
        if not later:
            photos = [photos[i] for i in np.random.default_rng(0).permutation(len(photos))]
        for split, chosen in (("train", photos[:122]), ("val", photos[122:198])):
            (folder / split / cls).mkdir(parents=True, exist_ok=True)
            for photo in chosen:
                shutil.copy2(photo, folder / split / cls / photo.name)
    return folder


def share(flags: np.ndarray) -> str:
    low, high = wilson_interval(int(flags.sum()), len(flags))
    return f"{flags.mean():.1%} ({low:.1%}-{high:.1%}) of {len(flags)}"


def measure(name: str, data: Path, outsiders: list[str], work: Path, seed: int) -> dict:
    started = time.perf_counter()
    run = work / f"{name}-run-{seed}"
    if not (run / "model.json").is_file():
        photoclass.train(data, out=run, cache_dir=work / "cache", seed=seed, verbose=False, progress=False, track=False)
    trained = time.perf_counter() - started
    meta = json.loads((run / "model.json").read_text())["outliers"]
    rows = list(csv.DictReader((run / "split.csv").open()))
    root = Path(json.loads((run / "config.json").read_text())["data"])
    paths = {
        split: [str(root / r["path"]) for r in rows if r["split"] == split and r["status"] == "ok"]
        for split in ("val", "test")
    }
    score = {
        split: np.array([p.outlier_score for p in photoclass.predict(run, found, progress=False)])
        for split, found in paths.items()
    }
    outside = np.array(
        [p.outlier_score for p in photoclass.predict(run, outsiders, progress=False) if p.outlier_score is not None]
    )
    old = float(np.quantile(score["val"], meta["accept"]))  # torch.quantile's linear rule, as fit used
    result = {
        "set": name,
        "seed": seed,
        "train_seconds": round(trained, 1),
        "reference": meta["reference"],
        "reference_photos": meta["validated_on"],
        "val_photos": len(score["val"]),
    }
    for which, threshold in (("before (validation photos)", old), ("now", meta["threshold"])):
        result[which] = {
            "threshold": round(threshold, 4),
            "test accepted": share(score["test"] <= threshold),
            "outsiders flagged": share(outside > threshold),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated: each trains its own split")
    parser.add_argument("--max-outsiders", type=int, default=0, help="a seeded sample of this many (0: all)")
    parser.add_argument("--sets", default="weather,clothing,given,given-later")
    parser.add_argument("--work", type=Path, default=None, help="keep runs here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="unknown-threshold-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = {
        "weather": (WEATHER, CLOTHING),
        "clothing": (CLOTHING, WEATHER),
        "given": (given_folder(work), CLOTHING),
        "given-later": (given_folder(work, later=True), CLOTHING),
    }
    for name in args.sets.split(","):
        data, outsiders = cases[name]
        photos = sorted(str(p) for p in outsiders.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if 0 < args.max_outsiders < len(photos):
            photos = sorted(np.random.default_rng(0).choice(photos, args.max_outsiders, replace=False))
        for seed in map(int, args.seeds.split(",")):
            print(json.dumps(measure(name, data, photos, work, seed), indent=2), flush=True)


if __name__ == "__main__":
    main()
