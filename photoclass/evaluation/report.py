"""Evaluate a model on a prepared dataset; write test.json and the plots of a run."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import PrepareConfig, TrainConfig
from ..data.augment import augment_batch, parse_augment
from ..data.dataset import PreparedDataset
from ..data.loader import BatchLoader, to_float
from ..data.prepare import prepare
from ..errors import PhotoclassError
from ..models.registry import InputSpec
from ..runs.rundir import RunDir, load_model
from ..training.loop import predict_logits
from .metrics import classification_report
from . import plots

MAX_MISCLASSIFIED = 60


def evaluate_dataset(net: nn.Module, dataset: PreparedDataset, spec: InputSpec, config, *,
                     loaders: dict[str, BatchLoader] | None = None,
                     full_model: nn.Module | None = None) -> dict[str, Any]:
    """Test metrics, train and val loss/accuracy, the generalization gap, misclassified photos.

    `loaders` may hold cached features for `net`; with `config.tta` the test photos go
    through `full_model` (default `net`) as pixels, as they are and mirrored.
    """
    def loader(split: str, pixels: bool = False) -> BatchLoader:
        if loaders and split in loaders and not pixels:
            return loaders[split]
        return BatchLoader(dataset.images, dataset.labels, dataset.indices(split.replace("_eval", "")),
                           batch_size=config.batch_size, mean=spec.mean, std=spec.std)

    results: dict[str, Any] = {}
    for name, split in (("train", "train_eval"), ("val", "val"), ("test", "test")):
        if name == "test" and config.tta:
            logits, labels = predict_logits(full_model or net, loader(split, pixels=True), bf16=config.bf16,
                                            flip_average=True)
        else:
            logits, labels = predict_logits(net, loader(split), bf16=config.bf16)
        if name == "test":
            results["test"] = classification_report(logits, labels, dataset.classes, top_k=config.top_k)
            results["misclassified"] = _misclassified(logits, labels, dataset, "test")
        else:
            results[name] = _loss_and_accuracy(logits, labels)
    results["generalization_gap"] = results["train"]["accuracy"] - results["test"]["accuracy"]
    return results


def _loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    if not len(labels):
        return {"count": 0, "loss": float("nan"), "accuracy": float("nan")}
    return {"count": len(labels), "loss": float(nn.functional.cross_entropy(logits, labels)),
            "accuracy": float((logits.argmax(1) == labels).float().mean())}


def _misclassified(logits, labels, dataset: PreparedDataset, split: str) -> list[dict[str, Any]]:
    probabilities = logits.softmax(1)
    rows = [dataset.usable[i] for i in dataset.indices(split)]
    wrong = torch.nonzero(logits.argmax(1) != labels).flatten().tolist()
    wrong.sort(key=lambda i: -float(probabilities[i].max()))  # most confident mistakes first
    return [{"path": rows[i].path, "true": dataset.classes[int(labels[i])],
             "predicted": dataset.classes[int(probabilities[i].argmax())],
             "confidence": round(float(probabilities[i].max()), 4), "index": int(dataset.indices(split)[i])}
            for i in wrong[:MAX_MISCLASSIFIED]]


def write_evaluation(run: RunDir, evaluation: dict[str, Any], history, dataset: PreparedDataset,
                     config) -> None:
    """test.json and the plots: learning curves, confusion matrix, misclassified, augmentation."""
    run.write_json("test.json", evaluation)
    if history:
        plots.learning_curves(history, run.plots / "learning_curves.png")
    plots.confusion_matrix(evaluation["test"]["confusion_matrix"], dataset.classes,
                           run.plots / "confusion_matrix.png")
    wrong = evaluation["misclassified"][:24]
    if wrong:
        plots.image_grid([dataset.images[w["index"]] for w in wrong],
                         [f"{w['true']} -> {w['predicted']} ({w['confidence']:.2f})" for w in wrong],
                         run.plots / "misclassified.png", title="misclassified test photos (true -> predicted)")
    augmentation_preview(dataset, config.augment, run.plots / "augmentation.png", seed=config.seed)


def augmentation_preview(dataset: PreparedDataset, augment: str, path: Path, *, photos: int = 4,
                         variants: int = 5, seed: int = 0) -> Path:
    """A grid: each row one training photo, first as cached, then augmented `variants` times."""
    spec = parse_augment(augment)
    train = dataset.indices("train")
    chosen = np.random.default_rng(seed).choice(train, size=min(photos, len(train)), replace=False)
    generator = torch.Generator().manual_seed(seed)
    images, captions = [], []
    for index in chosen:
        original = torch.from_numpy(dataset.images[int(index)])[None]  # (1, H, W, 3)
        batch = to_float(original.expand(variants, -1, -1, -1))
        augmented = augment_batch(batch, spec, generator) if spec.enabled else batch
        label = dataset.classes[int(dataset.labels[index])]
        images.append(original[0].numpy())
        captions.append(f"{label} (original)")
        for x in augmented:
            images.append((x.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
            captions.append(str(spec) if len(str(spec)) < 28 else "augmented")
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.image_grid(images, captions, path, columns=variants + 1, title=f"augment: {spec}")
    return path


def evaluate_run(run_path: str | os.PathLike, data: str | os.PathLike | None = None, *,
                 progress: bool | None = None, tta: bool | None = None) -> dict[str, Any]:
    """Re-evaluate a saved run: on its own test split, or on every photo of another folder."""
    run = RunDir(run_path)
    config_json = run.read_json("config.json")
    net, meta = load_model(run)
    spec = net.input_spec
    config = TrainConfig.from_dict(config_json["train"])
    if tta is not None:
        config = dataclasses.replace(config, tta=tta)
    if data is None:
        prep = PrepareConfig.from_dict({**config_json["prepare"], "image_size": spec.size})
        dataset = prepare(config_json["data"], config=prep, progress=progress)
        if dataset.classes != meta["classes"]:
            raise PhotoclassError(f"The run's data folder now has classes {dataset.classes}, "
                                  f"but the model was trained on {meta['classes']}.")
        evaluation = evaluate_dataset(net, dataset, spec, config)
        name = "test"
    else:
        dataset = prepare(data, image_size=spec.size, val_size=0.0, test_size=0.0, progress=progress)
        unknown = sorted(set(dataset.classes) - set(meta["classes"]))
        if unknown:
            raise PhotoclassError(f"{data} has classes the model does not know: {unknown}. "
                                  f"The model knows {meta['classes']}.")
        evaluation = _evaluate_all(net, dataset, spec, config, meta["classes"])
        name = Path(data).resolve().name
    out = run.path / "evaluations"
    out.mkdir(exist_ok=True)
    RunDir(out).write_json(f"{name}.json", evaluation)
    plots.confusion_matrix(evaluation["test"]["confusion_matrix"], meta["classes"],
                           out / f"{name}_confusion_matrix.png", title=f"confusion matrix ({name})")
    evaluation["written_to"] = str(out / f"{name}.json")
    return evaluation


def _evaluate_all(net, dataset: PreparedDataset, spec: InputSpec, config, classes: list[str]) -> dict:
    """Every usable photo of `dataset` is a test photo; labels mapped onto the model's classes."""
    labels = np.array([classes.index(dataset.classes[i]) for i in dataset.labels])
    loader = BatchLoader(dataset.images, labels, np.arange(len(dataset)), batch_size=config.batch_size,
                         mean=spec.mean, std=spec.std)
    logits, y = predict_logits(net, loader, bf16=config.bf16, flip_average=config.tta)
    return {"test": classification_report(logits, y, classes, top_k=config.top_k)}
