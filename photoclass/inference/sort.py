"""Copy photos into one folder per predicted class; never move, never overwrite."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from PIL import Image

from ..core.atomic import check_writable
from ..data.arrays import array_item
from ..data.outside import check_outside
from ..core.errors import PhotoclassError
from ..tasks import SINGLE_LABEL, Task
from .prediction import Prediction

UNSURE = "_unsure"
UNKNOWN = "_unknown"  # far from every training photo: none of the classes
NO_LABEL = "_none"  # a multi-label model decided none of its labels
CONFIDENCE_PLACES = 3  # the table prints and --min-confidence compares confidences at this many places


def shown_confidence(confidence: float) -> float:
    """The confidence as the table prints it and `min_confidence` compares it: 0.8996 is 0.900."""
    return round(confidence, CONFIDENCE_PLACES)


def sort_into(
    predictions: list[Prediction], out: str | Path, *, min_confidence: float = 0.0, task: Task = SINGLE_LABEL
) -> Counter:
    """Copy each predicted photo to `out/<class>/` (each folder `task` files it under): to
    `out/_unknown/` when it is far from every training photo (`Prediction.unknown`), to
    `out/_unsure/` below `min_confidence` (compared with the confidence as printed, to three places).

    A name already taken gets ' (1)', ' (2)', ... before its suffix. Returns copies per folder.
    """
    check_min_confidence(min_confidence)
    check_outside(out, *{_source_data(p.path) for p in predictions}, flag="--sort-into")
    out = check_writable(out, hint="pass a folder to sort into")
    counts: Counter = Counter()
    for prediction in predictions:
        if prediction.error:
            continue
        if prediction.unknown:
            folders = [UNKNOWN]
        elif shown_confidence(prediction.confidence) < min_confidence:
            folders = [UNSURE]
        else:
            folders = [class_folder(label) for label in task.filed_under(prediction)] or [NO_LABEL]
        for folder in folders:
            _copy_into(prediction.path, out / folder)
            counts[folder] += 1
    return counts


def _copy_into(path: str, folder: Path) -> None:
    """The photo at `path` copied into `folder`; an image of array data (mnist.npz#x_test/3) as a PNG."""
    source = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = None if source.is_file() else _array_pixels(path)
    if pixels is not None:
        name = path[path.rfind("/", 0, path.index("#")) + 1 :]
        _save_without_overwriting(pixels, name, folder)  # digits.npz#x_test/3 -> digits.npz_x_test_3.png
    else:
        _copy_without_overwriting(source, folder)


def class_folder(label: str) -> str:
    """`label` as one folder name inside the sorting folder, whatever the data called it: class
    names come from CSV cells, array files and other people's runs, so '../x', '/tmp/x', '' or
    '_unsure' must not name a folder elsewhere, DIR itself or the unsure folder."""
    name = "".join("_" if c in "/\\\x00:" or ord(c) < 32 else c for c in label).strip()
    if name in ("", ".", "..") or name.startswith((".", "_")):
        name = f"class {name}".strip()
    return name.encode()[:200].decode(errors="ignore")


def check_min_confidence(min_confidence: float) -> None:
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) or not 0 <= min_confidence <= 1:
        raise PhotoclassError(
            f"`min_confidence` must be a probability from 0 to 1, e.g. 0.9. Received: min_confidence={min_confidence!r}"
        )


def _source_data(path: str) -> Path:
    """What a predicted photo belongs to: its folder, or the array file of `digits.npz#x/3`."""
    left, sep, _ = path.partition("#")
    return Path(left) if sep and Path(left).is_file() else Path(left).parent


def _array_pixels(path: str):
    """(H, W, 3) pixels of `.../mnist.npz#x_test/3` or `.../cifar/data_batch_1#7`, else None."""
    left, sep, right = path.partition("#")
    if not sep:
        return None
    file = Path(left)
    for root in (file, file.parent):  # the array file itself, or the folder holding the batch
        pixels = array_item(root, f"{file.name}#{right}")
        if pixels is not None:
            return pixels
    return None


def _save_without_overwriting(pixels, stem: str, folder: Path) -> Path:
    stem = stem.replace("#", "_").replace("/", "_")
    for n in range(10_000):
        path = folder / (f"{stem}.png" if n == 0 else f"{stem} ({n}).png")
        try:
            with open(path, "xb") as f:
                Image.fromarray(pixels).save(f, format="PNG")
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"too many files named like {stem}.png in {folder}")


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
