"""An export is kept only if, on the run's own test photos, its runtime gives PyTorch's answers.

The rule: the same decision (class, or whole label set) for at least 99.5% of the photos, the
task's headline figure (test accuracy; mAP for label sets) within half a point, and, for an fp32
export, calibrated logits within `tolerance` of PyTorch's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..config import PrepareConfig
from ..core.progress import progress_bar
from ..core.errors import PhotoclassError
from ..runs.rundir import RunDir
from ..tasks import Task
from .prediction import BasePredictor

MIN_AGREEMENT = 0.995
MAX_ACCURACY_DROP = 0.005  # of the task's headline figure: accuracy, or mAP
FP32_TOLERANCE = 1e-3  # calibrated logits; float32 reorderings and fused kernels stay far below


@dataclass
class Photos:
    """The photos an export is checked on (uint8, at the model's size) and their labels."""

    pixels: np.ndarray
    labels: np.ndarray
    split: str


def run_photos(
    run: RunDir,
    size: int,
    split: str = "test",
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool | None = False,
) -> Photos:
    """A split of the run's own data, decoded at `size` as training did (from the cache)."""
    from ..data.prepare import prepare

    source = run.data_source()
    config = run.config()
    try:
        dataset = prepare(
            source, config=PrepareConfig.from_dict({**config["prepare"], "image_size": size}), progress=progress
        )
    except PhotoclassError as e:
        raise PhotoclassError(
            f"An export is checked on the run's {split} photos, and they cannot be read: {e}"
        ) from None
    chosen = dataset.indices(split)
    if not len(chosen) and split == "test":
        chosen, split = dataset.indices("val"), "val"
    if not len(chosen):
        raise PhotoclassError(
            f"{run.path}'s data has no {split} photos to check an export on. HINT: train with a "
            "test split (--test-size)."
        )
    if limit is not None and len(chosen) > limit:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, limit, replace=False))
    return Photos(np.stack([dataset.images[i] for i in chosen]), dataset.labels[chosen], split)


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
    found = judge(reference.task, logits_want, logits_got, photos, fp32=fp32, tolerance=tolerance)
    found["images_per_s"] = round(len(photos.labels) / seconds, 1) if seconds else None
    found["torch_images_per_s"] = round(len(photos.labels) / seconds_torch, 1) if seconds_torch else None
    if want[0][1] is not None and got[0][1] is not None and candidate.threshold is not None:
        unknown_want = np.concatenate([w[1] for w in want]) > reference.threshold
        unknown_got = np.concatenate([g[1] for g in got]) > candidate.threshold
        found["unknown_agreement"] = float((unknown_want == unknown_got).mean())
    return found


def judge(
    task: Task, want: np.ndarray, got: np.ndarray, photos: Photos, *, fp32: bool, tolerance: float = FP32_TOLERANCE
) -> dict:
    """The rule applied to PyTorch's (`want`) and the export's (`got`) calibrated logits of
    `photos`: the share of photos whose decision agrees, the task's headline figure ("figure":
    accuracy, or mAP for label sets) of each, the largest logit difference, "kept" and "why_not"."""
    same = task.agreement(want, got)
    figure = task.headline
    measured = {
        name: task.headline_figure(logits, photos.labels) for name, logits in (("torch", want), ("export", got))
    }
    found = {
        "photos": len(photos.labels),
        "split": photos.split,
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
            f"{photos.split} photos (agreement {found['agreement']:.2%} < {MIN_AGREEMENT:.1%})"
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
        rule=f"agreement >= {MIN_AGREEMENT:.1%}, {figure} "
        f"within {MAX_ACCURACY_DROP:.1%}" + (f", logits within {tolerance:g}" if fp32 else ""),
    )
    return found


def _in_turns(
    reference: BasePredictor, candidate: BasePredictor, pixels: np.ndarray, batch_size: int, progress: bool | None
) -> tuple[list, list, float, float]:
    """(reference's outputs, candidate's, each batch's, and the seconds each took): the two
    alternate batch by batch, so both see the same machine."""
    want, got, seconds_want, seconds_got = [], [], 0.0, 0.0
    reference.outputs(pixels[:batch_size]), candidate.outputs(pixels[:batch_size])  # warm-up, untimed
    for start in progress_bar(range(0, len(pixels), batch_size), desc="check", unit="batch", progress=progress):
        batch = pixels[start : start + batch_size]
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
    words = (
        f"{found['split']} photos: {found['photos']}, agreement with PyTorch {found['agreement']:.2%}, {figure} "
        f"{found[figure]:.2%} (PyTorch {found[f'{figure}_torch']:.2%}), max |logit diff| "
        f"{found['max_abs_logit_diff']:.2e}"
    )
    if "unknown_agreement" in found:
        words += f", 'unknown' agreement {found['unknown_agreement']:.2%}"
    if found.get("images_per_s"):
        words += f", {found['images_per_s']:g} images/s (PyTorch {found['torch_images_per_s']:g}, in turns)"
    return words
