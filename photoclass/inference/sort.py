"""Copy photos into one folder per predicted class; never move, never overwrite."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from ..core.atomic import check_writable
from ..core.errors import PhotoclassError
from .predictor import Prediction

UNSURE = "_unsure"


def sort_into(predictions: list[Prediction], out: str | Path, *, min_confidence: float = 0.0) -> Counter:
    """Copy each predicted photo to `out/<class>/` (or `out/_unsure/` below `min_confidence`).

    A name already taken gets ' (1)', ' (2)', ... before its suffix. Returns copies per folder.
    """
    check_min_confidence(min_confidence)
    out = check_writable(out, hint="pass a folder to sort into")
    counts: Counter = Counter()
    for prediction in predictions:
        if prediction.error:
            continue
        folder = UNSURE if prediction.confidence < min_confidence else prediction.label
        source = Path(prediction.path)
        (out / folder).mkdir(parents=True, exist_ok=True)
        _copy_without_overwriting(source, out / folder)
        counts[folder] += 1
    return counts


def check_min_confidence(min_confidence: float) -> None:
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) \
            or not 0 <= min_confidence <= 1:
        raise PhotoclassError(f"`min_confidence` must be a probability from 0 to 1, e.g. 0.9. "
                              f"Received: min_confidence={min_confidence!r}")


def _copy_without_overwriting(source: Path, folder: Path) -> Path:
    for n in range(10_000):
        name = source.name if n == 0 else f"{source.stem} ({n}){source.suffix}"
        try:
            with open(source, "rb") as src, open(folder / name, "xb") as dst:  # x: fail if it exists
                shutil.copyfileobj(src, dst)
        except FileExistsError:
            continue
        shutil.copystat(source, folder / name)
        return folder / name
    raise FileExistsError(f"too many files named like {source.name} in {folder}")
