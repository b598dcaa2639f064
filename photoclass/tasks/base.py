"""What kind of answer a model gives: the `Task` every stage asks, and the registry of tasks.

A task owns the output activation, the loss, the decision, the metrics and the headline figure
runs are ranked by, calibration, the label-error method, the ranking `predict` returns, the
folders `--sort-into` files a photo in, and how an export's agreement is measured. A new kind of
task is a new module with a `Task` subclass, registered here; the stages stay as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import PhotoclassError

if TYPE_CHECKING:  # a task is imported by predictors of exports, which run without torch
    import torch
    from torch import nn

Array = Any  # a numpy array or a torch tensor: each method answers in the kind it was given


class Task:
    """The interface; `SingleLabel` is the reference implementation."""

    name: str = ""
    headline: str = ""  # the key of `metrics` that runs are ranked by (higher is better)
    sets: bool = False  # its answer is a set of labels (each with its own score), not the top class
    losses: tuple[str, ...] = ("auto",)  # the `loss` values it takes; configured({"loss": ...}) applies one
    answer: str = "class"  # what one photo's decision is called in messages ("another class than ...")
    accuracy: str = "acc"  # what the share of photos `correct` is called in the training lines

    def default_model(self, photos: int) -> tuple[str | None, str]:
        """(the model `train` builds for `photos` photos when none is asked for, None for
        TrainConfig's; why, in a few words)."""
        return None, ""

    # training
    def loss_fn(self, *, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """The mean loss of the raw model on `labels` (what validation and reports print)."""
        raise NotImplementedError

    def correct(self, logits: Array, labels: Array) -> Array:
        """Per photo, whether the model's decision matches its labels (bool)."""
        raise NotImplementedError

    def fold_score(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """The held-out photos' score, summed over them, that cross-validation picks a head's
        strength by (divided by the photos, the mean)."""
        return float(self.correct(logits, labels).sum())

    # answers
    def activate(self, logits: Array) -> Array:
        """Probabilities of (N, C) logits, as torch or numpy, whichever came in."""
        raise NotImplementedError

    def decide(self, scores: Array) -> Array:
        """The decision of (N, C) probabilities (single-label's argmax decides logits alike)."""
        raise NotImplementedError

    def named(self, label: Any, classes: list[str]) -> str:
        """One photo's label (a class index, or a row of a label matrix) as text."""
        raise NotImplementedError

    def decided(self, probabilities: np.ndarray, classes: list[str]) -> list[str] | None:
        """The labels decided for one photo where the answer is a set; None where it is the top class."""
        return None

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """One class index a photo, for folds stratified by label."""
        raise NotImplementedError

    def scores(self, probabilities: np.ndarray, classes: list[str]) -> dict[str, float] | None:
        """Every label's probability where the answer is a set (each is decided on its own); else None."""
        return None

    def relabeled(self, labels: np.ndarray, classes: list[str], onto: list[str]) -> np.ndarray:
        """`labels` given over `classes` as they are over the model's classes `onto` (a superset)."""
        raise NotImplementedError

    def class_weights(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Weights that balance the training labels, for `loss_fn(class_weights=...)`."""
        raise NotImplementedError

    def ranked(self, probabilities: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
        """One photo's classes with their probabilities, best first, at most `k`."""
        raise NotImplementedError

    def filed_under(self, prediction) -> list[str]:
        """The classes whose folders `--sort-into` copies a predicted photo into."""
        raise NotImplementedError

    def average_flipped(self, logits: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """Logits of a photo predicted as it is and mirrored (test-time augmentation)."""
        raise NotImplementedError

    # evaluation
    def summary(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """count, loss and the headline figure of one split."""
        raise NotImplementedError

    def metrics(
        self, logits: torch.Tensor, labels: torch.Tensor, classes: list[str], *, top_k: int, temperature: float
    ) -> dict[str, Any]:
        """Everything test.json holds for a split; its "error" is 1 - the headline figure."""
        raise NotImplementedError

    def mistakes(self, logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, Any, float]]:
        """(index, what was predicted (for `named`), confidence) of each wrong photo, surest first."""
        raise NotImplementedError

    def difference(self, label: Any, predicted: Any, classes: list[str]) -> dict[str, list[str]]:
        """What a mistake got wrong beyond `named`'s two texts: for label sets, the labels it
        missed and those it added; nothing for one class a photo."""
        return {}

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """The temperature that makes the validation probabilities mean what they say."""
        raise NotImplementedError

    def headline_figure(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """The headline figure (`headline`) of (N, C) numpy logits against their labels."""
        raise NotImplementedError

    def agreement(self, reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Per photo, whether two models' logits (an export and PyTorch) decide alike."""
        return self.decide(reference) == self.decide(candidate)

    # a decision fitted per run (e.g. a threshold per label), saved as model.json's "decision"
    def fitted(self, logits: torch.Tensor, labels: torch.Tensor) -> Task:
        """This task with its decision fitted on the validation split's calibrated `logits`;
        itself where there is nothing to fit."""
        return self

    def state(self) -> dict[str, Any]:
        """What `fitted` learned, as JSON; empty where nothing was (nothing is saved then)."""
        return {}

    def configured(self, state: dict[str, Any] | None) -> Task:
        """This task with a saved `state` (what `state()` gave) restored."""
        return self

    def label_issues(
        self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int, progress=False
    ) -> list:
        """Every photo ranked by how likely its label is wrong, most suspicious first, from
        models that never saw it nor its near-duplicates (`groups`), on frozen `features`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


TASKS: dict[str, Task] = {}
DEFAULT = "single-label"


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def unregister_task(name: str) -> None:
    TASKS.pop(name, None)


def get_task(name: str | None = None) -> Task:
    """The task called `name`; None (a run from before tasks were recorded) is single-label."""
    name = name or DEFAULT
    try:
        return TASKS[name]
    except KeyError:
        raise PhotoclassError(
            f"Unknown task {name!r}. HINT: one of {', '.join(sorted(TASKS))}; a newer photoclass may know it."
        ) from None


def task_for(requested: str, data_summary: dict[str, Any]) -> Task:
    """The task asked for (`--task`), or with "auto" the one the data's format says."""
    return get_task(data_summary.get("task") if requested == "auto" else requested)


def task_of(meta: dict[str, Any]) -> Task:
    """The task of a model, as its model.json (or an export's metadata, decoded) records it."""
    return get_task(meta.get("task")).configured(meta.get("decision"))


def task_names() -> list[str]:
    return sorted(TASKS)
