"""The plain multi-label baseline beside photoclass's default, on the same split and test photos.

Baseline: frozen features of a pretrained backbone, mean-pooled (its own global pooling, no
multi-stage statistics), standardized, one scikit-learn logistic regression per label (C=1),
decided at 0.5, and also at per-label thresholds tuned on the validation split. The run's own
test.json gives photoclass's figures; every figure comes with its bootstrap 95% interval.

    python benchmarks/multilabel_mosaics.py --out /tmp/mosaics --photos 800
    photoclass train /tmp/mosaics/labels.csv --out runs/mosaics
    python benchmarks/multilabel_baseline.py /tmp/mosaics/labels.csv runs/mosaics
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import photoclass
from photoclass.data.loader import BatchLoader
from photoclass.models.registry import create_model, model_info
from photoclass.tasks.multi_label import MultiLabel, best_threshold
from photoclass.training.features import extract_features


def features(data: Path, run: Path, model: str) -> tuple[np.ndarray, object]:
    """Every usable photo's frozen features, and the dataset split as the run split it."""
    config = json.loads((run / "config.json").read_text())["prepare"]
    info = model_info(model)
    dataset = photoclass.prepare(data, **{**config, "image_size": info.input_spec.size}, progress=False)
    net = create_model(model, len(dataset.classes)).eval()
    encode, _ = net.split_for_training(0)
    loader = BatchLoader(
        dataset.images,
        dataset.labels,
        np.arange(len(dataset)),
        batch_size=32,
        mean=info.input_spec.mean,
        std=info.input_spec.std,
    )
    with torch.no_grad():
        return extract_features(encode, loader, desc="features", progress=False).numpy(), dataset


def run_probabilities(data: Path, run: Path, test: np.ndarray) -> np.ndarray:
    """The run's own (calibrated) probabilities of the test photos, as predict computes them."""
    from photoclass.inference.predictor import Predictor

    predictor = Predictor(run, unknown=False)
    config = json.loads((run / "config.json").read_text())["prepare"]
    dataset = photoclass.prepare(data, **{**config, "image_size": predictor.size}, progress=False)
    pixels = np.stack([dataset.images[i] for i in test])
    return np.concatenate([predictor.probabilities(pixels[s : s + 32]) for s in range(0, len(pixels), 32)])


def figures(task: MultiLabel, probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    logits = torch.from_numpy(np.log(np.clip(probabilities, 1e-7, 1 - 1e-7) / np.clip(1 - probabilities, 1e-7, 1)))
    found = task.metrics(logits.float(), torch.from_numpy(labels).float(), classes, top_k=1, temperature=1.0)
    return {k: found[k] for k in ("mAP", "mAP_interval", "macro_f1", "macro_f1_interval")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the CSV of label sets the run was trained on")
    parser.add_argument("run", type=Path, help="a photoclass run on it (its split and its test figures)")
    parser.add_argument("--model", default="efficientnet-lite2", help="the baseline's backbone (default: %(default)s)")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, dataset = features(args.data, args.run, args.model)
    y = np.asarray(dataset.labels)
    train, val, test = (dataset.indices(s) for s in ("train", "val", "test"))
    p_val, p_test = np.zeros((len(val), y.shape[1])), np.zeros((len(test), y.shape[1]))
    for i in range(y.shape[1]):
        fitted = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x[train], y[train, i])
        p_val[:, i], p_test[:, i] = fitted.predict_proba(x[val])[:, 1], fitted.predict_proba(x[test])[:, 1]
    half = figures(MultiLabel(), p_test, y[test], dataset.classes)
    tuned_task = MultiLabel([best_threshold(p_val[:, i], y[val, i]) for i in range(y.shape[1])])
    tuned = figures(tuned_task, p_test, y[test], dataset.classes)
    ours = json.loads((args.run / "test.json").read_text())["test"]
    at_half = figures(MultiLabel(), run_probabilities(args.data, args.run, test), y[test], dataset.classes)
    print(f"{len(test)} test photos, {len(dataset.classes)} labels")
    print(f"{'':<50}{'mAP':>8}  {'(95% interval)':<16}{'macro F1':>9}  (95% interval)")
    rows = {
        f"baseline {args.model}, LR per label, 0.5": half,
        f"baseline {args.model}, LR per label, tuned": tuned,
        f"photoclass {args.run.name}, its thresholds": ours,
        f"photoclass {args.run.name}, at 0.5": at_half,
    }
    for name, f in rows.items():
        (lo, hi), (flo, fhi) = f["mAP_interval"], f["macro_f1_interval"]
        print(f"{name:<50}{f['mAP']:>8.4f}  ({lo:.4f}-{hi:.4f}) {f['macro_f1']:>9.4f}  ({flo:.4f}-{fhi:.4f})")


if __name__ == "__main__":
    main()
