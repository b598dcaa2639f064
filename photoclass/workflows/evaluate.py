"""`evaluate_run()`: a saved run's model on its own test split, or on another labelled folder."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any


from ..config import PrepareConfig, TrainConfig
from ..core.progress import progress_bar
from ..core.device import resolve_device, resolve_precision
from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from ..data.prepare import prepare
from ..evaluation import plots
from ..evaluation.report import evaluate_all, evaluate_dataset
from ..runs.rundir import RunDir, load_model
from ..tasks import task_of


def evaluate_run(
    run: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    progress: bool | None = None,
    tta: bool | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Re-evaluate a saved run: on its own test split, or on every photo of another folder.

    Each evaluation goes to a new file in RUN/evaluations/ (`test.json`, `data-<folder>.json`,
    then `-2`, `-3`, ...): none replaces another, nor the run's own test.json.
    """
    run = RunDir(run)
    config_json = run.config()
    check_outside(run / RunDir.EVALUATIONS, data, run.data_source(), flag="RUN")
    where = resolve_device(device)
    net, meta = load_model(run)
    task = task_of(meta)
    net = net.to(where)
    spec = net.input_spec
    config = TrainConfig.from_dict(config_json["train"])
    precision = resolve_precision(precision, where, stage="predict", trained=config.precision)
    config = dataclasses.replace(
        config, device=str(where), precision=precision, **({"tta": tta} if tta is not None else {})
    )
    if data is None:
        prep = PrepareConfig.from_dict({**config_json["prepare"], "image_size": spec.size})
        dataset = prepare(run.data_source(), config=prep, progress=progress, pixels=False)  # a CSV run: its CSV
        if dataset.classes != meta["classes"]:
            raise PhotoclassError(
                f"The run's data folder now has classes {dataset.classes}, "
                f"but the model was trained on {meta['classes']}. HINT: evaluate on a folder of "
                "the model's classes with --data DIR, or train a new run on the folder as it is."
            )
        evaluation = evaluate_dataset(
            net, dataset, spec, config, task=task, temperature=meta.get("temperature", 1.0), progress=progress
        )
        name = "test"
    else:
        dataset = prepare(data, image_size=spec.size, val_size=0.0, test_size=0.0, progress=progress, pixels=False)
        unknown = sorted(set(dataset.classes) - set(meta["classes"]))
        if unknown:
            raise PhotoclassError(
                f"{data} has classes the model does not know: {unknown}. "
                f"The model knows {meta['classes']}. HINT: evaluate on photos of those classes "
                "only, e.g. a copy of the folder without the others."
            )
        evaluation = evaluate_all(
            net,
            dataset,
            spec,
            config,
            meta["classes"],
            task=task,
            temperature=meta.get("temperature", 1.0),
            progress=progress,
        )
        name = f"data-{Path(data).resolve().name}"
    out = run / RunDir.EVALUATIONS
    out.mkdir(exist_ok=True)
    name = _unused_name(out, name)
    RunDir(out).write_json(f"{name}.json", evaluation)
    if "confusion_matrix" in evaluation["test"]:  # one class a photo
        plots.confusion_matrix(
            evaluation["test"]["confusion_matrix"],
            meta["classes"],
            out / f"{name}_confusion_matrix.png",
            title=f"confusion matrix ({name})",
        )
    evaluation["written_to"] = str(out / f"{name}.json")
    return evaluation


def evaluate_outsiders(
    run_path: str | os.PathLike, outsiders: str | os.PathLike, *, progress: bool | None = None
) -> dict[str, Any]:
    """How the run's "none of these" check tells photos of no known class (every photo under
    `outsiders`) from its own test photos: AUROC, the share of each accepted at the threshold,
    and the test accuracy on the accepted photos. Written to RUN/evaluations/."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from ..inference.predictor import Predictor

    run = RunDir(run_path)
    check_outside(run / RunDir.EVALUATIONS, outsiders, run.data_source(), flag="RUN")
    meta = run.model_meta()
    task = task_of(meta)
    if not meta.get("outliers"):
        raise PhotoclassError(
            f"{run.path} was trained without the 'none of these' check. HINT: train it again "
            "with this photoclass (the check is on by default, --unknown-accept 0.975)."
        )
    predictor = Predictor(run.path)
    if not Path(outsiders).exists():
        raise PhotoclassError(f"Folder not found: {outsiders}. HINT: check the path.")
    found = [p for p in predictor.predict([outsiders], progress=progress) if not p.error]
    if not found:
        raise PhotoclassError(f"No readable photo under {outsiders}. HINT: pass a folder of photos.")
    config_json = run.config()
    prep = PrepareConfig.from_dict({**config_json["prepare"], "image_size": predictor.size})
    dataset = prepare(run.data_source(), config=prep, progress=progress, pixels=False)
    test = dataset.indices("test")
    scores, right = [], []
    with progress_bar(total=len(test), desc="test photos", unit="img", progress=progress) as bar:
        for start in range(0, len(test), predictor.batch_size):
            chosen = test[start : start + predictor.batch_size]
            rows = predictor.predict_pixels(np.stack([dataset.images[i] for i in chosen]))  # decoded as read
            for i, row in zip(chosen, rows):
                p, score, _ = predictor.read_row(row)
                scores.append(score)
                right.append(meta["classes"][int(task.decide(p[None])[0])] == dataset.classes[dataset.labels[i]])
            bar.update(len(chosen))
    inside, outside = np.asarray(scores), np.asarray([p.outlier_score for p in found])
    right = np.asarray(right, dtype=bool)
    threshold = predictor.threshold
    accepted = inside <= threshold
    result = {
        "outsiders": str(Path(outsiders).resolve()),
        "outsider_photos": len(outside),
        "test_photos": len(inside),
        "threshold": threshold,
        "accept": meta["outliers"].get("accept"),
        "auroc": float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside])),
        "outsiders_accepted": float((outside <= threshold).mean()),
        "test_accepted": float(accepted.mean()),
        "test_accuracy": float(right.mean()),
        "test_accuracy_on_accepted": float(right[accepted].mean()) if accepted.any() else None,
    }
    out = run / RunDir.EVALUATIONS
    out.mkdir(exist_ok=True)
    name = _unused_name(out, f"outsiders-{Path(outsiders).resolve().name}")
    RunDir(out).write_json(f"{name}.json", result)
    plots.outlier_histogram({"test photos": inside, "outsiders": outside}, threshold, out / f"{name}.png")
    result["written_to"] = str(out / f"{name}.json")
    return result


def _unused_name(folder: Path, name: str) -> str:
    n, candidate = 1, name
    while (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate
