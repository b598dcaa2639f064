"""What the review page shows: every photo of a run's data with the model's answer and its
nearest training photos, and the queues worth a look (likely mislabeled, validation and test
mistakes, the confusion matrix's cells, duplicates with different labels, and the unsure and
"none of these" photos of a new folder)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import PrepareConfig
from ..core.errors import PhotoclassError
from ..core.progress import progress_bar
from ..data.arrays import read_arrays
from ..core.atomic import write_bytes_atomic
from ..data.corrections import array_sha256, file_sha256, files_sha256
from ..data.labelsets import labels_of
from ..data.prepare import prepare
from ..inference.prediction import Prediction, expand_paths
from ..inference.predictor import Predictor, check_run_folder
from ..runs.rundir import RunDir

NEAREST = 4  # training photos shown beside each photo
UNSURE = 0.6  # a new photo whose top class is below this probability is "unsure"


@dataclass
class ReviewPhoto:
    id: int
    path: str  # as split.csv names it (relative to the run's data), or a new photo's path
    split: str  # train, val, test; "new" for a photo of --photos
    labels: list[str]  # given: one class, a label set, or none (a new photo)
    sha256: str  # of the file's bytes (of the array image for array data): what corrections match
    file: Path | None  # the photo, served as it is; None for an image of array data
    top: list[tuple[str, float]] = field(default_factory=list)  # the model's classes, best first
    decided: list[str] | None = None  # a multi-label model's decided set
    unknown: bool = False  # "none of these": far from every training photo
    outlier_score: float | None = None
    nearest: list[tuple[int, float]] = field(default_factory=list)  # (training photo's id, cosine distance)

    @property
    def answer(self) -> list[str]:
        """What the model says, in the form of `labels`."""
        return self.decided if self.decided is not None else [self.top[0][0]] if self.top else []

    @property
    def old_label(self) -> str:
        return " ".join(self.labels)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "split": self.split,
            "labels": self.labels,
            "sha256": self.sha256,
            "top": [{"label": c, "probability": round(p, 4)} for c, p in self.top],
            "decided": self.decided,
            "unknown": self.unknown,
            "outlier_score": None if self.outlier_score is None else round(self.outlier_score, 4),
            "nearest": [{"id": i, "distance": round(d, 4)} for i, d in self.nearest],
        }


@dataclass
class Queue:
    name: str
    title: str
    ids: list[int]
    note: str = ""


@dataclass
class ReviewData:
    run: Path
    classes: list[str]
    multi_label: bool
    photos: list[ReviewPhoto]
    queues: list[Queue]
    confusion: list[list[list[int]]] | None  # [true][predicted] -> ids of validation and test photos
    root: Path  # the run's data (a folder, an array file, a CSV's folder)
    input_size: int  # the model's, in pixels
    arrays: object | None = None  # the ArraySet of array data

    def pixels(self, photo: ReviewPhoto) -> np.ndarray | None:
        """(H, W, C) uint8 of a photo of array data; None for a photo file."""
        if photo.file is not None or self.arrays is None:
            return None
        return self.arrays.images[self.arrays.index(photo.path)]


def build_review(
    run: str | os.PathLike,
    *,
    photos: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> ReviewData:
    """Every photo of `run`'s data, and of `photos` (a folder of new photos), with the model's
    answer and nearest training photos, and the queues of those worth a look. `cache`: an .npz
    file keeping the model's outputs on the run's photos for the next start (same weights, same photos)."""
    run_dir = RunDir(run)
    check_run(run_dir)
    predictor = Predictor(run_dir.path, device=device)
    meta = run_dir.model_meta()
    multi = predictor.task.sets
    dataset = _dataset(run_dir, predictor.size, progress)
    root = dataset.root
    arrays = _array_set(run_dir, dataset)
    if arrays is not None:
        shas = [array_sha256(arrays.images[arrays.index(r.path)]) for r in dataset.usable]
        files = [None] * len(dataset.usable)
    else:
        files = [root / r.path for r in dataset.usable]
        shas = files_sha256(files)
    items = [
        ReviewPhoto(i, r.path, str(r.split), _given(r.label, multi), sha, file)
        for i, (r, sha, file) in enumerate(zip(dataset.usable, shas, files))
    ]
    by_path = {p.path: p.id for p in items}
    # the index's rows count the run's usable photos as split.csv lists them
    bank = [by_path.get(r["path"]) for r in run_dir.split_rows() if r["status"] == "ok"]
    probabilities, features = _embedded(predictor, dataset, _key(run_dir, predictor, shas), cache, progress)
    _answer(predictor, items, probabilities, features, bank)
    checked = [p for p in items if p.split in ("val", "test")]
    mistakes, every = _checked_queues(checked)
    queues = [
        _suspects(run_dir, predictor.task, by_path, features, dataset),
        mistakes,
        _conflicts(items, dataset.groups),
        every,
    ]
    if photos is not None:
        queues += _new_photos(predictor, Path(photos), items, bank, progress)
    confusion = None if multi else _confusion(checked, meta["classes"])
    return ReviewData(
        run_dir.path, list(meta["classes"]), multi, items, queues, confusion, root, predictor.size, arrays
    )


def check_run(run: RunDir) -> None:
    if not run.path.is_dir():
        raise PhotoclassError(f"No such run: {run.path}. HINT: `photoclass runs` lists the runs.")
    check_run_folder(run.path)


def _dataset(run: RunDir, size: int, progress: bool | None):
    """The run's data as it was prepared for training (its split), at the model's size."""
    source = run.data_source()
    if not source or not Path(source).exists():
        raise PhotoclassError(
            f"The data {run.path} was trained on is not at {source}. HINT: put it back there; review "
            "shows the run's own photos."
        )
    config = PrepareConfig.from_dict({**run.config()["prepare"], "image_size": size})
    return prepare(source, config=config, progress=progress, pixels=False)


def _array_set(run: RunDir, dataset):
    if not any("#" in r.path for r in dataset.usable):
        return None
    return read_arrays(dataset.root, run.config()["prepare"].get("layout", "auto"))


def _given(label: str, multi: bool) -> list[str]:
    return labels_of(label) if multi else [label]


def _batches(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(start, min(n, start + size)) for start in range(0, n, size)]


def _key(run: RunDir, predictor: Predictor, shas: list[str]) -> str:
    """What the model's outputs on the run's photos depend on: its weights, size and the photos."""
    found = hashlib.sha256(file_sha256(run / RunDir.WEIGHTS).encode())
    found.update(f"{predictor.size} {predictor.precision} {int(predictor.tta)}\n".encode())
    found.update("\n".join(shas).encode())
    return found.hexdigest()


def _embedded(predictor: Predictor, dataset, key: str, cache: Path | None, progress) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), features (N, D)) of the run's usable photos: read from `cache`
    where it was written for `key`, else computed (minutes for thousands of photos on a CPU) and kept there."""
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache, allow_pickle=False) as kept:
                if str(kept["key"]) == key:
                    return kept["probabilities"], kept["features"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # damaged: computed again, and written anew
    found = [
        predictor.embedded(np.stack([dataset.images[i] for i in chosen]))
        for chosen in progress_bar(
            _batches(len(dataset), predictor.batch_size), desc="review", unit="batch", progress=progress
        )
    ]
    probabilities, features = np.concatenate([p for p, _ in found]), np.concatenate([f for _, f in found])
    if cache is not None:
        buffer = io.BytesIO()
        np.savez(buffer, key=np.array(key), probabilities=probabilities, features=features)
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cache, buffer.getvalue())
    return probabilities, features


def _answer(
    predictor: Predictor, items: list[ReviewPhoto], probabilities: np.ndarray, features: np.ndarray, bank: list
) -> None:
    """Fills in the model's answer and nearest training photos of `items`, from their outputs."""
    import torch

    for chosen in _batches(len(items), 1024):  # (1024, bank) similarities at a time
        scores = distances = rows = None
        if predictor.outliers is not None:
            found = torch.from_numpy(features[chosen])
            scores = predictor.outliers(found).cpu().numpy()
            far, index = predictor.outliers.nearest(found, NEAREST + 1)
            distances, rows = far.cpu().numpy(), predictor.outliers.rows[index.cpu()].numpy()
        for b, i in enumerate(chosen):
            item = items[i]
            row = probabilities[i] if scores is None else np.r_[probabilities[i], scores[b]]
            p = predictor.answer(Prediction(item.path), row, 3)
            item.top, item.decided, item.unknown, item.outlier_score = p.top, p.labels, p.unknown, p.outlier_score
            if rows is not None:
                near = [(bank[r], float(d)) for r, d in zip(rows[b], distances[b]) if r < len(bank)]
                item.nearest = [(k, max(0.0, d)) for k, d in near if k is not None and k != item.id][:NEAREST]


def _checked_queues(checked: list[ReviewPhoto]) -> list[Queue]:
    """The validation and test photos the model gets wrong (surest first), and all of them (least sure first)."""
    return [
        Queue(
            "mistakes",
            "validation and test mistakes",
            [p.id for p in sorted(checked, key=lambda p: -p.top[0][1]) if set(p.answer) != set(p.labels)],
            f"of {len(checked)} validation and test photos",
        ),
        Queue(
            "checked",
            "every validation and test photo",
            [p.id for p in sorted(checked, key=lambda p: p.top[0][1])],
            "least sure first: their labels make the figures",
        ),
    ]


def _suspects(run: RunDir, task, by_path: dict[str, int], features, dataset) -> Queue:
    """The audit's likely mislabeled photos, when the run was audited into RUN/audit; else found
    here: cleanlab on out-of-fold logistic regressions over the run's own features."""
    title = "likely mislabeled"
    if run.exists(f"{RunDir.AUDIT}/{RunDir.AUDIT_ISSUES}"):
        rows = run.audit_issues()
        ids = [by_path[r["path"]] for r in rows if r.get("flagged") == "1" and r["path"] in by_path]
        return Queue("suspects", title, ids, f"from {run.path / RunDir.AUDIT / RunDir.AUDIT_ISSUES}")
    try:
        issues = task.label_issues(features, dataset.labels, dataset.groups, folds=5, seed=0)
    except PhotoclassError as e:
        return Queue("suspects", title, [], f"not found: {e}")
    flagged = [s.index for s in issues if s.flagged]
    return Queue(
        "suspects", title, flagged, "cleanlab on out-of-fold predictions from the run's features (no RUN/audit)"
    )


def _conflicts(items: list[ReviewPhoto], groups: np.ndarray) -> Queue:
    members: dict[int, list[ReviewPhoto]] = {}
    for item, group in zip(items, groups):
        members.setdefault(int(group), []).append(item)
    conflicting = [g for g in members.values() if len({tuple(sorted(p.labels)) for p in g}) > 1]
    return Queue(
        "conflicts",
        "near-duplicates with different labels",
        [p.id for g in conflicting for p in g],
        f"{len(conflicting)} groups",
    )


def _confusion(checked: list[ReviewPhoto], classes: list[str]) -> list[list[list[int]]]:
    index = {c: i for i, c in enumerate(classes)}
    cells: list[list[list[int]]] = [[[] for _ in classes] for _ in classes]
    for p in checked:
        if p.labels[0] in index:
            cells[index[p.labels[0]]][index[p.top[0][0]]].append(p.id)
    return cells


def _new_photos(
    predictor: Predictor, folder: Path, items: list[ReviewPhoto], bank: list[int | None], progress
) -> list[Queue]:
    """The photos of `folder`, appended to `items`: queues of those "none of these" and those unsure."""
    if not folder.is_dir():
        raise PhotoclassError(f"--photos {folder}: no such folder. HINT: pass a folder of new photos.")
    files = expand_paths([folder])
    found: list[ReviewPhoto] = []
    for ok, pixels, _ in predictor.decoded(files, progress=progress, desc="new photos"):
        if pixels is None:
            continue
        batch = [
            ReviewPhoto(len(items) + len(found) + b, p.path, "new", [], "", Path(p.path)) for b, p in enumerate(ok)
        ]
        probabilities, features = predictor.embedded(pixels)
        _answer(predictor, batch, probabilities, features, bank)
        found += batch
    for photo, sha in zip(found, files_sha256([p.file for p in found])):
        photo.sha256 = sha
    items += found
    unknown = [p.id for p in found if p.unknown]
    unsure = [p.id for p in sorted(found, key=lambda p: p.top[0][1]) if not p.unknown and p.top[0][1] < UNSURE]
    return [
        Queue("unknown", "new photos: none of these", unknown, f"of {len(found)} photos in {folder}"),
        Queue("unsure", "new photos: unsure", unsure, f"top class below {UNSURE:.0%}, least sure first"),
    ]
