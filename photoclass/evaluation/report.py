"""Evaluate a model on a prepared dataset; write test.json and the plots of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.augment import augment_batch, parse_augment
from ..data.dataset import PreparedDataset
from ..data.loader import BatchLoader, to_float
from ..data.outside import check_outside
from ..models.registry import InputSpec
from ..runs.rundir import RunDir
from .predict import predict_logits
from .stats import wilson_interval
from . import plots

MAX_MISCLASSIFIED = 60


def evaluate_dataset(
    net: nn.Module,
    dataset: PreparedDataset,
    spec: InputSpec,
    config,
    *,
    task,
    loaders: dict[str, BatchLoader] | None = None,
    full_model: nn.Module | None = None,
    temperature: float | None = None,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Test metrics, train and val loss/accuracy, the generalization gap, misclassified photos,
    as `task` (a `photoclass.tasks.Task`) measures them.

    `loaders` may hold cached features for `net`; with `config.tta` the test photos go
    through `full_model` (default `net`) as pixels, as they are and mirrored. `temperature`
    None fits one on the validation split (1.0 without one); it is returned with the rest.
    `progress` (None: on a terminal) shows a bar for each split.
    """

    def loader(split: str, pixels: bool = False) -> BatchLoader:
        if loaders and split in loaders and not pixels:
            return loaders[split]
        return BatchLoader(
            dataset.images,
            dataset.labels,
            dataset.indices(split.replace("_eval", "")),
            batch_size=config.batch_size,
            mean=spec.mean,
            std=spec.std,
            device=device,
        )

    device = _device_of(full_model or net)
    results: dict[str, Any] = {}
    for name, split in (("train", "train_eval"), ("val", "val"), ("test", "test")):
        if name == "test" and config.tta:
            logits, labels = predict_logits(
                full_model or net,
                loader(split, pixels=True),
                precision=config.precision,
                flip_average=task.average_flipped,
                progress=progress,
                desc=f"{name} photos",
            )
        else:
            logits, labels = predict_logits(
                net, loader(split), precision=config.precision, progress=progress, desc=f"{name} photos"
            )
        if name == "val" and temperature is None:
            temperature = task.calibrate(logits, labels) if len(dataset.indices("val")) else 1.0
            task = task.fitted(logits / temperature, labels) if len(dataset.indices("val")) else task
            if task.state():  # e.g. a threshold per label, for model.json
                results["decision"] = task.state()
        if name == "test":
            results["test"] = task.metrics(logits, labels, dataset.classes, top_k=config.top_k, temperature=temperature)
            wrong = _misclassified(task, logits / temperature, labels, dataset, "test")
            results["misclassified"] = wrong[:MAX_MISCLASSIFIED]
            results["wrong_paths"] = sorted(w["path"] for w in wrong)  # all of them, for paired tests between runs
        else:
            results[name] = task.summary(logits, labels)
    results["temperature"] = temperature
    results["generalization_gap"] = results["train"][task.headline] - results["test"][task.headline]
    return results


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _misclassified(task, logits, labels, dataset: PreparedDataset, split: str) -> list[dict[str, Any]]:
    """The wrong photos of `split`, most confident mistakes first."""
    rows = [dataset.usable[i] for i in dataset.indices(split)]
    return [
        {
            "path": rows[i].path,
            "true": task.named(labels[i], dataset.classes),
            "predicted": task.named(predicted, dataset.classes),
            "confidence": round(confidence, 4),
            "index": int(dataset.indices(split)[i]),
            **task.difference(labels[i], predicted, dataset.classes),
        }
        for i, predicted, confidence in task.mistakes(logits, labels)
    ]


def write_evaluation(
    run: RunDir, evaluation: dict[str, Any], history, dataset: PreparedDataset, config, *, augment: str | None = None
) -> None:
    """test.json and the plots: learning curves (or, for a classifier fitted in one solve, its
    cross-validated strength), confusion matrix, misclassified, and the augmentation preview of
    `augment`, what training applied (default `config.augment`), unless that is none."""
    run.write_test_metrics(evaluation)
    classifier = run.classifier()
    if classifier:  # fitted in one solve: what was tuned is C, not epochs
        plots.regularization_curve(
            classifier["cv_accuracy"], classifier["C"], classifier.get("folds", 5), run.plot("regularization")
        )
    if len(history) > 1 or (history and not classifier):
        plots.learning_curves(history, run.plot("learning_curves"))
    test = evaluation["test"]
    if "confusion_matrix" in test:  # one class a photo
        plots.confusion_matrix(test["confusion_matrix"], dataset.classes, run.plot("confusion_matrix"))
    if "pr_curves" in test:  # a threshold per label
        plots.precision_recall_curves(test["pr_curves"], test["per_class"], test["count"], run.plot("pr_curves"))
    if "calibration_bins" in test:
        plots.reliability_diagram(test["calibration_bins"], test["ece"], run.plot("calibration"))
    wrong = evaluation["misclassified"][:24]
    if wrong:
        sets = "missed" in wrong[0]  # a label set each: what was missed and added says more than both sets
        plots.image_grid(
            [dataset.images[w["index"]] for w in wrong],
            [_set_mistake(w) if sets else f"{w['true']} -> {w['predicted']} ({w['confidence']:.2f})" for w in wrong],
            run.plot("misclassified"),
            title="wrong label sets of test photos (- missed, + extra)"
            if sets
            else "misclassified test photos (true -> predicted)",
        )
    if parse_augment(augment or config.augment).enabled:
        augmentation_preview(dataset, augment or config.augment, run.plot("augmentation"), seed=config.seed)


def _set_mistake(wrong: dict[str, Any]) -> str:
    """'-rain +shoes (0.31)': the labels missed and added, and the surest one's margin."""
    changes = [f"-{label}" for label in wrong["missed"]] + [f"+{label}" for label in wrong["extra"]]
    return f"{' '.join(changes)} ({wrong['confidence']:.2f})"


def augmentation_preview(
    dataset: PreparedDataset, augment: str, path: Path, *, photos: int = 4, variants: int = 5, seed: int = 0
) -> Path:
    """A grid: each row one training photo, first as cached, then augmented `variants` times."""
    check_outside(path, dataset.summary.get("source", dataset.root))  # a CSV's data is the CSV
    spec = parse_augment(augment)
    train = dataset.indices("train")
    chosen = np.random.default_rng(seed).choice(train, size=min(photos, len(train)), replace=False)
    generator = torch.Generator().manual_seed(seed)
    images, captions = [], []
    for index in chosen:
        original = torch.from_numpy(dataset.images[int(index)])[None]  # (1, H, W, 3)
        batch = to_float(original.expand(variants, -1, -1, -1))
        augmented = augment_batch(batch, spec, generator) if spec.enabled else batch
        label = dataset.usable[int(index)].label or "(no label)"
        images.append(original[0].numpy())
        captions.append(f"{label} (original)")
        for x in augmented:
            images.append((x.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
            captions.append(str(spec) if len(str(spec)) < 28 else "augmented")
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.image_grid(images, captions, path, columns=variants + 1, title=f"augment: {spec}")
    return path


def evaluate_all(
    net,
    dataset: PreparedDataset,
    spec: InputSpec,
    config,
    classes: list[str],
    *,
    task,
    temperature: float = 1.0,
    progress: bool | None = False,
) -> dict:
    """Every usable photo of `dataset` is a test photo; labels mapped onto the model's classes."""
    labels = task.relabeled(np.asarray(dataset.labels), dataset.classes, classes)
    loader = BatchLoader(
        dataset.images,
        labels,
        np.arange(len(dataset)),
        batch_size=config.batch_size,
        mean=spec.mean,
        std=spec.std,
        device=_device_of(net),
    )
    flip = task.average_flipped if config.tta else None
    logits, y = predict_logits(
        net, loader, precision=config.precision, flip_average=flip, progress=progress, desc="evaluate"
    )
    return {"test": task.metrics(logits, y, classes, top_k=config.top_k, temperature=temperature)}


def _one_label(test: dict[str, Any]) -> list[str]:
    interval = test.get("accuracy_interval")
    shown = f" (95% interval {interval[0]:.4f}-{interval[1]:.4f})" if interval else ""
    lines = [
        "",
        f"test: accuracy {test['accuracy']:.4f}{shown}  loss {test['loss']:.4f}  "
        f"macro F1 {test['macro_f1']:.4f}  ({test['count']} photos)",
    ]
    lines.append(f"  {'class':<16}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
    for name, c in test["per_class"].items():
        lines.append(f"  {name:<16}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}{c['support']:>9}")
    return lines


def _several_labels(test: dict[str, Any]) -> list[str]:
    def shown(key: str) -> str:
        interval = test.get(f"{key}_interval")
        return f" ({interval[0]:.4f}-{interval[1]:.4f})" if interval else ""

    lines = [
        "",
        f"test: mAP {test['mAP']:.4f}{shown('mAP')}  macro F1 {test['macro_f1']:.4f}{shown('macro_f1')} (95% "
        f"intervals, bootstrap)  exact match {test['accuracy']:.4f}  loss {test['loss']:.4f}  ({test['count']} "
        f"photos, {test['labels_per_photo']:.2f} labels a photo)",
        f"  micro F1 {test['micro_f1']:.4f}  per-photo F1 {test['per_photo_f1']:.4f}  Hamming loss "
        f"{test['hamming_loss']:.4f}",
        f"  {'label':<16}{'AP':>7}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}{'threshold':>11}",
    ]
    for name, c in test["per_class"].items():
        lines.append(
            f"  {name:<16}{c['ap']:>7.3f}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}"
            f"{c['support']:>9}{c['threshold']:>11.3f}"
        )
    return lines


def format_test(test: dict[str, Any], run_path, unknown: dict[str, Any] | None = None) -> str:
    """The test figures as a terminal table: overall, then per class, then how many test photos
    the 'none of these' check (`unknown`, evaluation's "outlier_scores") would mark unknown."""
    lines = _several_labels(test) if "mAP" in test else _one_label(test)
    if unknown:
        photos = unknown["test_photos"]
        marked = photos - round(unknown["test_accepted"] * photos)
        low, high = wilson_interval(photos - marked, photos)
        lines.append(
            f"none of these: {marked} of the {photos} test photos would be marked unknown (far from every "
            f"training photo); {1 - marked / photos:.1%} accepted (95% interval {low:.1%}-{high:.1%})"
        )
    lines.append(f"run: {run_path}")
    return "\n".join(lines)
