"""An export is kept only if its runtime gives PyTorch's answers on every photo of the run that
can tell: all of them but those that calibrated an INT8 export (agreement needs no label).

The rule: the same decision (class, or whole label set) for at least 99.5% of those photos, the
same "none of these" answer for at least 99% of them, the task's headline figure on the test
split (test accuracy; mAP for label sets) within half a point, and, for an fp32 export,
calibrated logits within `tolerance` of PyTorch's. On a few hundred test photos alone one photo
is more than half a point, so the rule would read "no photo may change".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import PrepareConfig
from ..core.progress import progress_bar
from ..core.errors import PhotoclassError
from ..runs.rundir import RunDir
from ..tasks import Task
from .prediction import BasePredictor

MIN_AGREEMENT = 0.995
MIN_UNKNOWN_AGREEMENT = 0.99  # the "none of these" answers
MAX_ACCURACY_DROP = 0.005  # of the task's headline figure: accuracy, or mAP
FP32_TOLERANCE = 1e-3  # calibrated logits; float32 reorderings and fused kernels stay far below


@dataclass
class Photos:
    """The photos an export is checked on: `pixels` (uint8 at the model's size; an array, or
    photos decoded when read), their labels, the split the headline figure is measured on and
    which of the photos are in it (`scored`; None: all), and how many come from each split."""

    pixels: Any
    labels: np.ndarray
    split: str
    scored: np.ndarray | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def scored_part(self, values: np.ndarray) -> np.ndarray:
        return values if self.scored is None else values[self.scored]


class Chosen:
    """Some rows of a (possibly decoded-when-read) image array, read a slice at a time."""

    def __init__(self, images, indices: np.ndarray):
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: slice) -> np.ndarray:
        return np.asarray(self.images[self.indices[index]])


def _prepared(run: RunDir, size: int, progress: bool | None):
    from ..data.prepare import prepare

    config = PrepareConfig.from_dict({**run.config()["prepare"], "image_size": size})
    try:
        return prepare(run.data_source(), config=config, pixels="auto", progress=progress)
    except PhotoclassError as e:
        raise PhotoclassError(f"An export is checked on the run's photos, and they cannot be read: {e}") from None


def _scored_split(dataset, run: RunDir) -> str:
    for split in ("test", "val"):
        if len(dataset.indices(split)):
            return split
    raise PhotoclassError(
        f"{run.path}'s data has no test or validation photos to check an export on. HINT: train with "
        "a test split (--test-size)."
    )


def check_photos(
    run: RunDir, size: int, *, calibration: int = 0, seed: int = 0, progress: bool | None = False
) -> tuple[Photos, np.ndarray | None]:
    """(the photos an export of `run` is judged on, the training photos that calibrate it): up to
    `calibration` training photos, and at most half of them, drawn at random (`seed`), and every
    other photo of the run, decoded at `size` as training did. The pixels of the judged photos
    are read a batch at a time; only the calibration photos are held in memory."""
    dataset = _prepared(run, size, progress)
    images = dataset.exact_images()
    train = dataset.indices("train")
    chosen = np.random.default_rng(seed).choice(train, min(calibration, len(train) // 2), replace=False)
    chosen = np.sort(chosen)
    judged = np.setdiff1d(np.arange(len(dataset)), chosen)
    split = _scored_split(dataset, run)
    splits = dataset.splits[judged]
    counts = {s: int((splits == s).sum()) for s in ("train", "val", "test") if (splits == s).any()}
    photos = Photos(Chosen(images, judged), dataset.labels[judged], split, splits == split, counts)
    return photos, (np.asarray(images[chosen]) if len(chosen) else None)


def run_photos(
    run: RunDir,
    size: int,
    split: str = "test",
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool | None = False,
) -> Photos:
    """One split of the run's own data (the test split, or val where there is none), decoded at
    `size` as training did, held in memory."""
    dataset = _prepared(run, size, progress)
    if split == "test":
        split = _scored_split(dataset, run)
    chosen = dataset.indices(split)
    if not len(chosen):
        raise PhotoclassError(f"{run.path}'s data has no {split} photos.")
    if limit is not None and len(chosen) > limit:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, limit, replace=False))
    images = dataset.exact_images() if split != "train" else dataset.images
    return Photos(np.asarray(images[chosen]), dataset.labels[chosen], split, counts={split: len(chosen)})


def compare(
    reference: BasePredictor,
    candidate: BasePredictor,
    photos: Photos,
    *,
    fp32: bool,
    tolerance: float = FP32_TOLERANCE,
    batch_size: int = 16,
    progress: bool | None = False,
) -> dict:
    """How `candidate` agrees with `reference` on `photos`; "kept" says whether it passes, and
    "why_not" why it does not. `progress=None` shows a bar only on a terminal."""
    want, got, seconds_torch, seconds = _in_turns(reference, candidate, photos.pixels, batch_size, progress)
    logits_want, logits_got = np.concatenate([w[0] for w in want]), np.concatenate([g[0] for g in got])
    unknown = None
    if want[0][1] is not None and got[0][1] is not None and candidate.threshold is not None:
        unknown = (
            np.concatenate([w[1] for w in want]) > reference.threshold,
            np.concatenate([g[1] for g in got]) > candidate.threshold,
        )
    found = judge(reference.task, logits_want, logits_got, photos, fp32=fp32, tolerance=tolerance, unknown=unknown)
    found["images_per_s"] = round(len(photos) / seconds, 1) if seconds else None
    found["torch_images_per_s"] = round(len(photos) / seconds_torch, 1) if seconds_torch else None
    return found


def judge(
    task: Task,
    want: np.ndarray,
    got: np.ndarray,
    photos: Photos,
    *,
    fp32: bool,
    tolerance: float = FP32_TOLERANCE,
    unknown: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """The rule applied to PyTorch's (`want`) and the export's (`got`) calibrated logits of
    `photos`, and to their "none of these" answers (`unknown`: PyTorch's, the export's): the
    share of photos whose decision agrees, the task's headline figure ("figure": accuracy, or
    mAP for label sets) of each on the scored split, the largest logit difference, "kept" and
    "why_not"."""
    same = task.agreement(want, got)
    figure = task.headline
    labels = photos.scored_part(photos.labels)
    measured = {
        name: task.headline_figure(photos.scored_part(logits), labels)
        for name, logits in (("torch", want), ("export", got))
    }
    judged = "photos" if photos.counts.keys() - {photos.split} else f"{photos.split} photos"
    found = {
        "photos": len(photos),
        "judged_on": photos.counts or {photos.split: len(photos)},
        "split": photos.split,
        "scored_photos": len(labels),
        "figure": figure,
        "agreement": float(same.mean()),
        f"{figure}_torch": measured["torch"],
        figure: measured["export"],
        "max_abs_logit_diff": float(np.abs(want - got).max()),
    }
    reasons = []
    if found["agreement"] < MIN_AGREEMENT:
        reasons.append(
            f"it predicts another {task.answer} than PyTorch for {int((~same).sum())} of {len(same)} "
            f"{judged} (agreement {found['agreement']:.2%} < {MIN_AGREEMENT:.1%})"
        )
    if unknown is not None:
        agrees = unknown[0] == unknown[1]
        found["unknown_agreement"] = float(agrees.mean())
        if found["unknown_agreement"] < MIN_UNKNOWN_AGREEMENT:
            reasons.append(
                f"it answers 'none of these' otherwise than PyTorch for {int((~agrees).sum())} of {len(agrees)} "
                f"{judged} (agreement {found['unknown_agreement']:.2%} < {MIN_UNKNOWN_AGREEMENT:.0%})"
            )
    if measured["torch"] - measured["export"] > MAX_ACCURACY_DROP:
        reasons.append(
            f"its {photos.split} {figure} is {measured['export']:.2%} against PyTorch's "
            f"{measured['torch']:.2%} (more than {MAX_ACCURACY_DROP:.1%} lower)"
        )
    if fp32 and not found["max_abs_logit_diff"] <= tolerance:
        reasons.append(f"its logits differ from PyTorch's by up to {found['max_abs_logit_diff']:.2e} (> {tolerance:g})")
    found.update(
        kept=not reasons,
        why_not="; ".join(reasons),
        rule=f"agreement >= {MIN_AGREEMENT:.1%}"
        + (f", 'none of these' agreement >= {MIN_UNKNOWN_AGREEMENT:.0%}" if unknown is not None else "")
        + f", {figure} within {MAX_ACCURACY_DROP:.1%}"
        + (f", logits within {tolerance:g}" if fp32 else ""),
    )
    return found


def _in_turns(
    reference: BasePredictor, candidate: BasePredictor, pixels, batch_size: int, progress: bool | None
) -> tuple[list, list, float, float]:
    """(reference's outputs, candidate's, each batch's, and the seconds each took): the two
    alternate batch by batch, so both see the same machine."""
    want, got, seconds_want, seconds_got = [], [], 0.0, 0.0
    for start in progress_bar(range(0, len(pixels), batch_size), desc="check", unit="batch", progress=progress):
        batch = pixels[start : start + batch_size]
        if not start:  # warm-up, untimed
            reference.outputs(batch), candidate.outputs(batch)
        started = time.perf_counter()
        want.append(reference.outputs(batch))
        seconds_want += time.perf_counter() - started
        started = time.perf_counter()
        got.append(candidate.outputs(batch))
        seconds_got += time.perf_counter() - started
    return want, got, seconds_want, seconds_got


def describe(found: dict) -> str:
    """One line of an export's check, for the terminal."""
    figure = found.get("figure", "accuracy")  # exports checked before tasks named their figure
    split = found["split"]
    counts = found.get("judged_on", {split: found["photos"]})
    if set(counts) == {split}:
        words = f"{split} photos: {found['photos']}, agreement with PyTorch {found['agreement']:.2%}"
    else:
        parts = ", ".join(f"{name} {n}" for name, n in counts.items())
        words = f"photos judged: {found['photos']} ({parts}), agreement with PyTorch {found['agreement']:.2%}"
    if "unknown_agreement" in found:
        words += f", 'none of these' agreement {found['unknown_agreement']:.2%}"
    words += (
        f"; {split} {figure} {found[figure]:.2%} (PyTorch {found[f'{figure}_torch']:.2%}, "
        f"{found.get('scored_photos', found['photos'])} photos), max |logit diff| {found['max_abs_logit_diff']:.2e}"
    )
    if found.get("images_per_s"):
        words += f", {found['images_per_s']:g} images/s (PyTorch {found['torch_images_per_s']:g}, in turns)"
    return words
