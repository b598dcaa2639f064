"""photoclass: from a folder of photos to a trained, evaluated and servable classifier.

>>> import photoclass
>>> data = photoclass.prepare("photos/", out="prepared/photos")
>>> data.classes, len(data.indices("test"))
"""

import importlib
import os
from typing import TYPE_CHECKING

from .config import PrepareConfig, TrainConfig
from .core.errors import PhotoclassError, UnusedOptionWarning
from .core.version import __version__
from .data.dataset import PreparedDataset
from .data.decode import DecodeError, decode_photo
from .data.prepare import prepare

# The workflows import torch: they are imported when first used (PEP 562), each name bound to
# the function itself, so that help() and inspect.signature show its real parameters.
LAZY = {
    "train": ("workflows.train", "train"),  # train and evaluate a model
    "evaluate": ("workflows.evaluate", "evaluate_run"),  # re-evaluate a run, on its test split or a folder
    "load": ("runs.rundir", "load_model"),  # (model, model.json) of a run's best weights
    "sweep": ("workflows.sweep", "sweep"),  # an Optuna search over models and options
    "lr_find": ("workflows.lr_find", "lr_find"),  # the learning-rate range test
    "audit": ("workflows.audit", "audit"),  # likely mislabeled photos, conflicting duplicates, outliers
    "report": ("evaluation.html_report", "write_report"),  # (re)write RUN/report.html
    "review": ("workflows.review", "review"),  # a web page to fix a run's labels, into corrections.csv
    "label": ("workflows.label", "label"),  # the labelling page, in the order that teaches most
}
if TYPE_CHECKING:
    from .evaluation.html_report import write_report as report
    from .runs.rundir import load_model as load
    from .workflows.audit import audit
    from .workflows.evaluate import evaluate_run as evaluate
    from .workflows.label import label
    from .workflows.lr_find import lr_find
    from .workflows.review import review
    from .workflows.sweep import sweep
    from .workflows.train import train


def __getattr__(name: str):
    if name not in LAZY:
        raise AttributeError(f"module 'photoclass' has no attribute {name!r}")
    module, attribute = LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY))


def predict(
    run,
    paths,
    *,
    top_k: int = 3,
    tta: bool | None = None,
    device: str = "auto",
    progress=None,
    model: str | None = None,
    unknown: bool = True,
):
    """Predictions for files, folders and globs, from a run, an exported .onnx file, or
    "imagenet" (`model`: any timm backbone with an ImageNet-1k head instead of Lite2).
    `unknown`: mark photos far from every training photo (`Prediction.unknown`), when the
    run was trained with that check."""
    from .inference.predictor import open_predictor

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return open_predictor(run, tta=tta, device=device, backbone=model, unknown=unknown).predict(
        paths, top_k=top_k, progress=progress
    )


def similar(run, paths, *, k: int = 5, device: str = "auto", progress=None):
    """Each photo's prediction and its `k` nearest training photos (`.neighbours`: path, label,
    cosine distance); see `photoclass.inference.similar.similar`."""
    from .inference.similar import similar as nearest

    return nearest(
        run, [paths] if isinstance(paths, (str, os.PathLike)) else paths, k=k, device=device, progress=progress
    )


def leaderboard(*roots, data=None, sort: str = "select"):
    """Finished runs under `roots` (default "runs"), best first; see `photoclass.experiments.leaderboard`."""
    from .experiments.leaderboard import list_runs

    return list_runs(*roots, data=data, sort=sort)


def select(*roots, data=None, tolerance: float = 0.01):
    """The run with the lowest test error, or a run within `tolerance` of it with a smaller gap."""
    from .experiments.leaderboard import list_runs, select_run

    return select_run(list_runs(*roots, data=data), tolerance=tolerance)


def compare(runs, out="compare.html", *, tolerance: float = 0.01):
    """One HTML page comparing `runs`; returns its path."""
    from .experiments.compare import write_comparison

    return write_comparison(list(runs), out, tolerance=tolerance)


__all__ = [
    "prepare",
    "train",
    "lr_find",
    "audit",
    "review",
    "label",
    "evaluate",
    "load",
    "predict",
    "similar",
    "leaderboard",
    "select",
    "sweep",
    "report",
    "compare",
    "PrepareConfig",
    "TrainConfig",
    "PreparedDataset",
    "decode_photo",
    "DecodeError",
    "PhotoclassError",
    "UnusedOptionWarning",
    "__version__",
]
