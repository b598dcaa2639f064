"""How many labels `photoclass label`'s order needs, against random order, to reach 95% of the
test accuracy that the same head reaches with every training label.

A simulated labeller answers with the data set's own labels. The pool is the data set's train
and validation photos; its test split is held out and scores the head after each answer. The
order is `photoclass.training.active.Selector`'s, the code the label page asks; random order
draws from the pool with the seed. One JSON line: the labels each order needs (means over the
seeds), with per-seed figures under "seeds".

    python benchmarks/active_labelling.py /work/shared/data/weather --seeds 0,1,2

2-core AMD EPYC, 2026-12-07, seeds 0-2 (benchmarks/README.md): weather full accuracy 0.9881,
random 71.3 labels, active 27.0; clothing_small full accuracy 0.9167, random 516.7, active 213.3
(over seeds 0-5 clothing's active is 285.0 against 495.8: not yet robust; the standard orders
tried instead, none robust either, are in the README section).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import photoclass
from photoclass.config import TrainConfig
from photoclass.training.active import Head, Selector, fit_head
from photoclass.training.features import photo_features

TARGET_SHARE = 0.95


def schedule(pool: int) -> list[int]:
    """Label counts at which the test accuracy is measured: every count to 100, every 5th to
    400, every 25th beyond."""
    counts = [*range(2, 101), *range(105, 401, 5), *range(425, pool + 1, 25)]
    return [c for c in counts if c <= pool] + ([pool] if pool not in counts else [])


def labels_needed(order, x_test, y_test, num_classes: int, target: float, counts) -> int | None:
    """The first count of `counts` at which the head `order(count)` gives reaches `target`."""
    for count in counts:
        head = order(count)
        accuracy = float((head.probabilities(x_test, num_classes).argmax(1) == y_test).mean())
        if accuracy >= target:
            return count
    return None


def random_order(selector: Selector, y_pool: np.ndarray, seed: int):
    """count -> the head on the first `count` photos of a random order (each fit starts from the last)."""
    shuffled = np.random.default_rng(seed).permutation(len(y_pool))
    head = None

    def fitted(count: int) -> Head:
        nonlocal head
        head = selector.fit(shuffled[:count], y_pool[shuffled[:count]], init=head)
        return head

    return fitted


def active_order(selector: Selector, y_pool: np.ndarray):
    """count -> the head on the first `count` photos the selector asks for, answered from y_pool,
    as the label page fits it after each answer."""
    labelled: list[int] = []
    head = None

    def fitted(count: int) -> Head:
        nonlocal head
        while len(labelled) < count:
            found = selector.next(np.array(labelled, dtype=np.int64), head)
            if found is None:
                break
            labelled.append(found)
            head = selector.fit(np.array(labelled), y_pool[labelled], init=head)
        return head

    return fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="photos in any layout `train` reads")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the order (and of the random one)")
    parser.add_argument("--model", default=TrainConfig().model, help="the frozen backbone")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dataset = photoclass.prepare(args.data, progress=False, pixels=False)
    features, usable, _ = photo_features(dataset.paths(), model=args.model, progress=None)
    labels, splits = dataset.labels[usable], dataset.splits[usable]
    pool, test = np.flatnonzero(splits != "test"), np.flatnonzero(splits == "test")
    num_classes = len(dataset.classes)
    counts = schedule(len(pool))
    per_seed, full = [], []
    for seed in seeds:
        started = time.perf_counter()
        selector = Selector(features[pool], num_classes, seed=seed)
        # the pool's standardization, applied to the test photos
        mean, std = features[pool].double().mean(0), features[pool].double().std(0)
        x_test = (features[test].double() - mean) / torch.maximum(std, 0.1 * std.median().clamp(min=1e-12))
        y_pool, y_test = labels[pool], labels[test]
        every = fit_head(selector.x, y_pool)
        full_accuracy = float((every.probabilities(x_test, num_classes).argmax(1) == y_test).mean())
        target = TARGET_SHARE * full_accuracy
        found = {
            "seed": seed,
            "full_accuracy": round(full_accuracy, 4),
            "random": labels_needed(random_order(selector, y_pool, seed), x_test, y_test, num_classes, target, counts),
        }
        limit = found["random"] or len(pool)  # past random's count, active has lost: no need to go on
        active = active_order(selector, y_pool)
        found["active"] = labels_needed(active, x_test, y_test, num_classes, target, [c for c in counts if c <= limit])
        found["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(found), file=sys.stderr, flush=True)
        per_seed.append(found)
        full.append(full_accuracy)

    def mean(key):
        # a count never reached: the pool (random), or random's count (active stops there), a lower bound
        values = [s[key] if s[key] is not None else s["random"] or len(pool) for s in per_seed]
        return round(float(np.mean(values)), 1)

    print(
        json.dumps(
            {
                "data": str(args.data),
                "full_accuracy": round(float(np.mean(full)), 4),
                "target": round(TARGET_SHARE * float(np.mean(full)), 4),
                "random": mean("random"),
                "active": mean("active"),
                "test_photos": len(test),
                "pool": len(pool),
                "model": args.model,
                "seeds": per_seed,
            }
        )
    )


if __name__ == "__main__":
    main()
