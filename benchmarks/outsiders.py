"""Photos of no known class: how well scores on the default backbone's features tell them apart.

    python benchmarks/outsiders.py [--model efficientnet-lite2-ms] [--seed 0]

Two cases, each set the other's outsiders: a classifier of the weather photos shown the
clothing photos, and one of the clothing photos shown the weather photos. Everything is
fitted on the in-distribution training photos alone (the run's own split, `--seed`). For each score it prints the AUROC of test
photos against outsiders, and, for thresholds accepting 95%, 97.5% and 99% of the validation
photos, the share of outsiders and of test photos accepted and the test accuracy on the
accepted photos. photoclass uses knn1 at 97.5% (benchmarks/README.md says why).

Scores (higher = more outside): `maxprob` (1 - the top probability of the logistic-regression
head), `energy` (-logsumexp of its logits), `mahalanobis` (the smallest distance to a class
mean under a shared, shrunk covariance), `knnK` (cosine distance to the K-th nearest training
photo, on the backbone's features), `knnK-std` (the same on the standardized features the
head reads: photoclass's first choice, dropped).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import photoclass
from photoclass.data.loader import BatchLoader
from photoclass.models import create_model
from photoclass.training.features import extract_features

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def features_of(model, data) -> np.ndarray:
    spec = model.input_spec
    loader = BatchLoader(
        data.images, data.labels, np.arange(len(data.labels)), batch_size=32, mean=spec.mean, std=spec.std
    )
    return extract_features(model.inference_copy().forward_features, loader, progress=False).numpy()


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outsider scores above an inside photo), ties counted half."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside]))


KS = (1, 2, 3, 5, 10, 20)
SHARES = (0.95, 0.975, 0.99)  # of the validation photos the threshold accepts


def scores(train_x, train_y, queries: dict[str, np.ndarray], classes: int) -> dict[str, dict[str, np.ndarray]]:
    from sklearn.covariance import LedoitWolf
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    z = (train_x - mean) / std
    head = LogisticRegression(C=1.0, max_iter=2000).fit(z, train_y)
    means = np.stack([z[train_y == c].mean(0) for c in range(classes)])
    precision = LedoitWolf().fit(z - means[train_y]).precision_
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    out = {}
    for name, x in queries.items():
        q = (x - mean) / std
        logits = head.decision_function(q)
        probabilities = torch.from_numpy(logits).softmax(1).numpy()
        centred = q[:, None, :] - means[None]  # (N, C, F)
        distance = np.einsum("ncf,fg,ncg->nc", centred, precision, centred).min(1)
        raw = np.sort(1 - unit(x) @ unit(train_x).T, axis=1)  # the backbone's features as they are
        standardized = np.sort(1 - unit(q) @ unit(z).T, axis=1)  # the head's inputs: what photoclass compares
        out[name] = {
            "maxprob": 1 - probabilities.max(1),
            "energy": -torch.logsumexp(torch.from_numpy(logits), 1).numpy(),
            "mahalanobis": distance,
            **{f"knn{k}": raw[:, k - 1] for k in KS},
            **{f"knn{k}-std": standardized[:, k - 1] for k in (1, 10)},
            "correct": probabilities.argmax(1),
        }
    return out


def case(name: str, inside, outside, features) -> None:
    started = time.perf_counter()
    x, y = features(inside), np.asarray(inside.labels)
    outsiders = features(outside)
    fit = np.r_[inside.indices("train")]
    val, test = inside.indices("val"), inside.indices("test")
    found = scores(x[fit], y[fit], {"val": x[val], "test": x[test], "outside": outsiders}, len(inside.classes))
    print(
        f"\n{name}: fitted on {len(fit)} training photos; {len(val)} validation, {len(test)} test photos, "
        f"{len(outsiders)} outsiders ({time.perf_counter() - started:.0f} s)"
    )
    print(
        f"  test accuracy {np.mean(found['test']['correct'] == y[test]):.1%} (this benchmark's own head); for each "
        "share of validation photos the threshold accepts: outsiders accepted / test accepted / test accuracy on "
        "the accepted"
    )
    print(f"  {'score':<12}{'AUROC':>8}" + "".join(f"{f'at {share:.1%}':>26}" for share in SHARES))
    right = found["test"]["correct"] == y[test]
    for score in (s for s in found["test"] if s != "correct"):
        row = f"  {score:<12}{auroc(found['test'][score], found['outside'][score]):>8.4f}"
        for share in SHARES:
            threshold = np.quantile(found["val"][score], share)
            accepted = found["test"][score] <= threshold
            row += f"{(found['outside'][score] <= threshold).mean():>10.1%}{accepted.mean():>8.1%}{right[accepted].mean():>8.1%}"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite2-ms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument(
        "--features",
        type=Path,
        default=None,
        metavar="FILE.npz",
        help="keep each set's backbone features here, and reuse them on the next run",
    )
    args = parser.parse_args()
    model = create_model(args.model, 2).eval()
    size = model.input_spec.size
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp)
        weather = photoclass.prepare(
            SHARED / "weather", image_size=size, seed=args.seed, cache_dir=cache, progress=False
        )
        clothing = photoclass.prepare(
            SHARED / "clothing_small", image_size=size, seed=args.seed, cache_dir=cache, progress=False
        )
        print(
            f"{args.model} at {size} px, seed {args.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        stored = {}
        if args.features and args.features.is_file():
            stored = dict(np.load(args.features, allow_pickle=False))

        def features(data) -> np.ndarray:
            key = data.root.name
            if key not in stored:
                stored[key] = features_of(model, data)
                if args.features:
                    np.savez(args.features, **stored)
            return stored[key]

        case("weather classifier, clothing outsiders", weather, clothing, features)
        case("clothing classifier, weather outsiders", clothing, weather, features)


if __name__ == "__main__":
    main()
