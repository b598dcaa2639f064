"""Outsiders given to `train --outsiders`: does the threshold they set flag new outsiders?

    python benchmarks/outsiders_given.py [--given 0.5] [--seed 0]

Two cases, each data set the other's outsiders: the weather classifier shown clothing photos,
and the clothing classifier shown weather photos. A share (`--given`) of the outsiders, drawn
with the seed, goes to `train --outsiders`; the rest are held out. For the threshold before
(the default: 97.5% of the known photos accepted) and after the outsiders lowered it, prints
one JSON line per case: the share of held-out outsiders flagged unknown and the share of the
classifier's own test photos accepted (with 95% Wilson intervals).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import photoclass
from photoclass.evaluation.stats import wilson_interval
from photoclass.inference.prediction import expand_paths
from photoclass.inference.predictor import open_predictor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def share(hits: int, n: int) -> dict:
    return {"share": round(hits / n, 4), "interval": wilson_interval(hits, n), "photos": n}


def case(inside: Path, outside: Path, work: Path, given: float, seed: int) -> dict:
    photos = expand_paths([outside])
    order = np.random.default_rng(seed).permutation(len(photos))
    cut = int(round(given * len(photos)))
    folder = work / f"outsiders-{outside.name}"
    folder.mkdir(parents=True)
    for i in order[:cut]:  # links, not copies: the benchmark writes nothing in the data folder
        (folder / f"{i}{photos[i].suffix}").symlink_to(photos[i])
    held_out = [photos[i] for i in order[cut:]]
    run = photoclass.train(inside, out=work / f"run-{inside.name}", outsiders=str(folder), seed=seed, track=False).run
    check = run.model_meta()["outliers"]
    sharpened = check["sharpened"]
    predictor = open_predictor(run.path)
    root = Path(run.config()["data"])
    test = [root / r["path"] for r in run.split_rows() if r["split"] == "test" and r["status"] == "ok"]
    scores = {
        name: np.array(
            [p.outlier_score for p in predictor.predict(paths, progress=False) if p.outlier_score is not None]
        )
        for name, paths in (("outsiders", held_out), ("test", test))
    }
    result = {"inside": inside.name, "outsiders": outside.name, "given": sharpened["outsiders"]}
    for name, threshold in (("before", sharpened["before"]), ("after", check["threshold"])):
        result[name] = {
            "threshold": round(threshold, 4),
            "held_out_outsiders_flagged": share(int((scores["outsiders"] > threshold).sum()), len(scores["outsiders"])),
            "test_accepted": share(int((scores["test"] <= threshold).sum()), len(scores["test"])),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--given", type=float, default=0.5, help="the share of outsiders given to train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    weather, clothing = SHARED / "weather", SHARED / "clothing_small"
    work = Path(tempfile.mkdtemp(prefix="outsiders-given-"))
    try:
        for inside, outside in ((weather, clothing), (clothing, weather)):
            print(json.dumps(case(inside, outside, work, args.given, args.seed)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
