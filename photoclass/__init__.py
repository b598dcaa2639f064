"""photoclass: from a folder of photos to a trained, evaluated and servable classifier.

    >>> import photoclass
    >>> data = photoclass.prepare("photos/", out="prepared/photos")
    >>> data.classes, len(data.indices("test"))
"""
import os

from .config import PrepareConfig, TrainConfig
from .core.errors import PhotoclassError, UnusedOptionWarning
from .core.version import __version__
from .data.dataset import PreparedDataset
from .data.decode import DecodeError, decode_photo
from .data.prepare import prepare


def train(*args, **kwargs):
    """Train and evaluate a model; see `photoclass.workflows.train.train`."""
    from .workflows.train import train as _train  # torch is imported only when training

    return _train(*args, **kwargs)


def evaluate(run, data=None, **kwargs):
    """Re-evaluate a run; see `photoclass.workflows.evaluate.evaluate_run`."""
    from .workflows.evaluate import evaluate_run

    return evaluate_run(run, data, **kwargs)


def load(run, model=None):
    """(model, model.json) of a run's best weights; see `photoclass.runs.rundir.load_model`."""
    from .runs.rundir import load_model

    return load_model(run, model)


def predict(run, paths, *, top_k: int = 3, tta: bool | None = None, device: str = "auto", progress=None,
            model: str | None = None, unknown: bool = True):
    """Predictions for files, folders and globs, from a run, an exported .onnx file, or
    "imagenet" (`model`: any timm backbone with an ImageNet-1k head instead of Lite2).
    `unknown`: mark photos far from every training photo (`Prediction.unknown`), when the
    run was trained with that check."""
    from .inference.predictor import open_predictor

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return open_predictor(run, tta=tta, device=device, backbone=model, unknown=unknown).predict(
        paths, top_k=top_k, progress=progress)


def similar(run, paths, *, k: int = 5, device: str = "auto", progress=None):
    """Each photo's prediction and its `k` nearest training photos (`.neighbours`: path, label,
    cosine distance); see `photoclass.inference.similar.similar`."""
    from .inference.similar import similar as nearest

    return nearest(run, [paths] if isinstance(paths, (str, os.PathLike)) else paths, k=k, device=device,
                   progress=progress)


def leaderboard(*roots, data=None, sort: str = "select"):
    """Finished runs under `roots` (default "runs"), best first; see `photoclass.experiments.leaderboard`."""
    from .experiments.leaderboard import list_runs

    return list_runs(*roots, data=data, sort=sort)


def select(*roots, data=None, tolerance: float = 0.01):
    """The run with the lowest test error, or a run within `tolerance` of it with a smaller gap."""
    from .experiments.leaderboard import list_runs, select_run

    return select_run(list_runs(*roots, data=data), tolerance=tolerance)


def sweep(data, **kwargs):
    """An Optuna search over models and options; see `photoclass.experiments.sweep.sweep`."""
    from .workflows.sweep import sweep as _sweep

    return _sweep(data, **kwargs)


def lr_find(data, **kwargs):
    """The learning-rate range test; see `photoclass.workflows.lr_find.lr_find`."""
    from .workflows.lr_find import lr_find as _lr_find

    return _lr_find(data, **kwargs)


def audit(data, **kwargs):
    """Likely mislabeled photos, conflicting duplicates, outliers; see `photoclass.workflows.audit.audit`."""
    from .workflows.audit import audit as _audit

    return _audit(data, **kwargs)


def report(run):
    """(Re)write RUN/report.html; returns its path."""
    from .evaluation.html_report import write_report

    return write_report(run)


def compare(runs, out="compare.html", *, tolerance: float = 0.01):
    """One HTML page comparing `runs`; returns its path."""
    from .experiments.compare import write_comparison

    return write_comparison(list(runs), out, tolerance=tolerance)


__all__ = ["prepare", "train", "lr_find", "audit", "evaluate", "load", "predict", "similar", "leaderboard", "select", "sweep", "report",
           "compare", "PrepareConfig", "TrainConfig", "PreparedDataset",
           "decode_photo", "DecodeError", "PhotoclassError", "UnusedOptionWarning", "__version__"]
