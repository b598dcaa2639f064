"""A prediction, and what every engine's predictor shares: photos decoded in batches at the
model's size, mirrored for TTA, classes ranked; files, folders and globs expanded."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np

from ..data.arrays import array_layout, load_photo, read_arrays
from ..data.decode import IMAGE_SUFFIXES, DecodeError, decode_photo
from ..data.scan import is_hidden
from ..config import check_int
from ..core.progress import progress_bar
from ..core.errors import PhotoclassError
from ..tasks import SINGLE_LABEL, Task


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str = ""  # why the photo was skipped
    outlier_score: float | None = None  # distance to the training photos; None: the model has no such check
    unknown: bool = False  # farther than the threshold: "none of these", whatever the top class
    labels: list[str] | None = None  # a multi-label model's decided set (each over its threshold); else None
    scores: dict[str, float] | None = None  # a multi-label model's probability of every label

    @property
    def label(self) -> str:
        return self.top[0][0] if self.top else ""

    @property
    def confidence(self) -> float:
        return self.top[0][1] if self.top else 0.0

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        known = (
            {}
            if self.outlier_score is None
            else {"unknown": self.unknown, "outlier_score": round(self.outlier_score, 6)}
        )
        return {
            "path": self.path,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            **({} if self.labels is None else {"labels": self.labels}),
            **({} if self.scores is None else {"scores": {c: round(p, 6) for c, p in self.scores.items()}}),
            **known,
            "top": [{"label": c, "probability": round(p, 6)} for c, p in self.top],
        }


class BasePredictor:
    """Decoding, batching and ranking; subclasses turn (B, S, S, 3) uint8 into probabilities.

    With `tta`, each photo is also predicted mirrored and the two probabilities averaged, as
    `evaluate --tta` does."""

    classes: list[str]
    size: int
    batch_size: int = 16
    engine: str = ""
    precision: str = "fp32"  # the arithmetic: fp32, bf16, fp16, or int8 for a quantized export
    tta: bool = False

    threshold: float | None = None  # of the outlier score; None: no "none of these" check
    task: Task = SINGLE_LABEL  # what the outputs mean: the run's (model.json), single-label for an export

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:  # (B, S, S, 3) -> (B, classes)
        return self.scored(pixels)[0]

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(calibrated logits (B, classes), outlier scores (B,) or None) of (B, S, S, 3) uint8
        photos: what every engine computes, and what an export is checked on."""
        raise NotImplementedError

    def scored(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (B, classes), outlier scores (B,) or None) of (B, S, S, 3) uint8 photos."""
        logits, scores = self.outputs(pixels)
        return self.task.activate(logits), scores

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities of (B, S, S, 3) uint8 photos, mirrored too with `tta`; with an outlier
        check, its score (of the photo as it is) as one more column."""
        probabilities, scores = self.scored(pixels)
        if self.tta:
            probabilities = (probabilities + self.probabilities(np.ascontiguousarray(pixels[:, :, ::-1]))) / 2
        return probabilities if scores is None or self.threshold is None else np.c_[probabilities, scores]

    def read_row(self, row: np.ndarray) -> tuple[np.ndarray, float | None, bool]:
        """One row of `predict_pixels`: (probabilities, outlier score or None, unknown)."""
        if len(row) == len(self.classes):
            return row, None, False
        score = float(row[-1])
        return row[:-1], score, score > self.threshold

    def predict(
        self, paths: Iterable[str | os.PathLike], *, top_k: int = 3, progress: bool | None = None
    ) -> list[Prediction]:
        files = with_array_items(expand_paths(paths))
        results = [p for batch in self.iter_predict(files, top_k=top_k, progress=progress) for p in batch]
        order = {str(f): i for i, f in enumerate(files)}
        return sorted(results, key=lambda r: order[r.path])

    def iter_predict(self, files: list, *, top_k: int = 3, progress: bool | None = None) -> Iterator[list[Prediction]]:
        """The predictions of `files` (paths or array items), a batch at a time, failed photos
        with their reasons first in each."""
        check_int("top_k", top_k, 1, 100_000)
        k = max(1, min(top_k, len(self.classes)))
        for ok, pixels, failed in self.decoded(files, progress=progress):
            if ok:
                for prediction, row in zip(ok, self.predict_pixels(pixels)):
                    self.answer(prediction, row, k)
            yield failed + ok

    def answer(self, prediction: Prediction, row: np.ndarray, k: int) -> Prediction:
        """`prediction` filled in from one row of `predict_pixels`, with its `k` best classes, as
        the task ranks and decides them. Returns it."""
        p, prediction.outlier_score, prediction.unknown = self.read_row(row)
        prediction.top = self.task.ranked(p, self.classes, k)
        prediction.labels = self.task.decided(p, self.classes)
        prediction.scores = self.task.scores(p, self.classes)
        return prediction

    def decoded(
        self, files: list, *, progress: bool | None = None, desc: str = "predict"
    ) -> Iterator[tuple[list[Prediction], np.ndarray | None, list[Prediction]]]:
        """Batches of `files` (paths or ArrayItems) decoded at the model's size: (a blank
        Prediction per decoded photo, their (B, S, S, 3) pixels or None, the failed photos with
        their reasons)."""
        with progress_bar(total=len(files), desc=desc, unit="img", progress=progress) as bar:
            for batch in _batches(files, self.batch_size):
                decoded, ok, failed = [], [], []
                for path in batch:
                    try:
                        photo = (
                            load_photo(path.root, path.name, size=self.size)
                            if isinstance(path, ArrayItem)
                            else decode_photo(path, size=self.size)
                        )
                        decoded.append(photo.to_array())
                        ok.append(Prediction(str(path)))
                    except (DecodeError, OSError) as e:
                        failed.append(Prediction(str(path), error=getattr(e, "reason", None) or str(e)))
                yield ok, np.stack(decoded) if decoded else None, failed
                bar.update(len(batch))


@dataclass(frozen=True)
class ArrayItem:
    """One image of array data (`mnist.npz#x_test/3`), predicted like a photo file."""

    root: Path
    name: str

    def __str__(self) -> str:
        return f"{self.root.parent / self.name}" if self.root.is_file() else f"{self.root / self.name}"


def with_array_items(files: list[Path]) -> list:
    """Array data (an .npz, a CIFAR folder, ...) replaced by its images, in order."""
    out: list = []
    for f in files:
        if array_layout(f) is None:
            out.append(f)
        else:
            arrays = read_arrays(f)
            out += [ArrayItem(arrays.root, name) for name in arrays.names]
    return out


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders searched recursively for image files (hidden ones skipped);
    glob patterns expanded. A path that matches nothing is an error naming it. Array data
    (an .npz or .npy, a CIFAR or IDX folder) is kept whole."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir() and array_layout(path) is not None:
            files.append(path)
        elif path.is_dir():
            files += sorted(_images_under(path))
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(str(raw)):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            files += [m for m in matches if m.is_file()]
            for folder in (m for m in matches if m.is_dir()):
                files += sorted(_images_under(folder))
            if not matches:
                raise PhotoclassError(
                    f"No files match {raw!r}. HINT: check the pattern, e.g. 'photos/*.jpg' "
                    "or a folder, read recursively."
                )
        else:
            raise PhotoclassError(
                f"No such file or folder: {raw}. HINT: pass photos, folders of photos or a quoted glob."
            )
    return list(dict.fromkeys(files))  # each file once, in the order given


def _images_under(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for name in names:
            if not is_hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(root) / name


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
