"""`evaluate_run()`: a saved run's model on its own test split, or on another labelled folder."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..config import PrepareConfig, TrainConfig
from ..core.device import resolve_device, resolve_precision
from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from ..data.prepare import prepare
from ..evaluation import plots
from ..evaluation.report import evaluate_all, evaluate_dataset
from ..runs.rundir import RunDir, load_model


def evaluate_run(run_path: str | os.PathLike, data: str | os.PathLike | None = None, *,
                 progress: bool | None = None, tta: bool | None = None, device: str = "auto",
                 precision: str = "auto") -> dict[str, Any]:
    """Re-evaluate a saved run: on its own test split, or on every photo of another folder.

    Each evaluation goes to a new file in RUN/evaluations/ (`test.json`, `data-<folder>.json`,
    then `-2`, `-3`, ...): none replaces another, nor the run's own test.json.
    """
    run = RunDir(run_path)
    config_json = run.read_json("config.json")
    check_outside(run.path / "evaluations", data, run.data_source(), flag="RUN")
    where = resolve_device(device)
    net, meta = load_model(run)
    net = net.to(where)
    spec = net.input_spec
    config = TrainConfig.from_dict(config_json["train"])
    config = dataclasses.replace(config, device=str(where), precision=resolve_precision(precision, where),
                                 **({"tta": tta} if tta is not None else {}))
    if data is None:
        prep = PrepareConfig.from_dict({**config_json["prepare"], "image_size": spec.size})
        dataset = prepare(run.data_source(), config=prep, progress=progress)  # a CSV run: its CSV
        if dataset.classes != meta["classes"]:
            raise PhotoclassError(f"The run's data folder now has classes {dataset.classes}, "
                                  f"but the model was trained on {meta['classes']}. HINT: evaluate on a folder of "
                                  "the model's classes with --data DIR, or train a new run on the folder as it is.")
        evaluation = evaluate_dataset(net, dataset, spec, config, temperature=meta.get("temperature", 1.0))
        name = "test"
    else:
        dataset = prepare(data, image_size=spec.size, val_size=0.0, test_size=0.0, progress=progress)
        unknown = sorted(set(dataset.classes) - set(meta["classes"]))
        if unknown:
            raise PhotoclassError(f"{data} has classes the model does not know: {unknown}. "
                                  f"The model knows {meta['classes']}. HINT: evaluate on photos of those classes "
                                  "only, e.g. a copy of the folder without the others.")
        evaluation = evaluate_all(net, dataset, spec, config, meta["classes"], temperature=meta.get("temperature", 1.0))
        name = f"data-{Path(data).resolve().name}"
    out = run.path / "evaluations"
    out.mkdir(exist_ok=True)
    name = _unused_name(out, name)
    RunDir(out).write_json(f"{name}.json", evaluation)
    plots.confusion_matrix(evaluation["test"]["confusion_matrix"], meta["classes"],
                           out / f"{name}_confusion_matrix.png", title=f"confusion matrix ({name})")
    evaluation["written_to"] = str(out / f"{name}.json")
    return evaluation


def _unused_name(folder: Path, name: str) -> str:
    n, candidate = 1, name
    while (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate
