"""The training photos behind a prediction: the k nearest in the features the "none of these"
score compares (the same index, RUN/outliers.safetensors; exact search)."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.progress import progress_bar
from ..core.errors import PhotoclassError
from ..data.labelsets import JOIN
from ..runs.rundir import RunDir
from .engines.pytorch import Predictor
from .prediction import Prediction, expand_paths, with_array_items


@dataclass
class Neighbour:
    path: str  # relative to the run's data, as in split.csv
    label: str  # its given label (a multi-label run's set as split.csv joins it: "a;b", "" for none)
    distance: float  # cosine distance, 0 = the same direction
    labels: list[str] | None = None  # a multi-label run's given set; else None

    @property
    def shown(self) -> str:
        return self.label if self.labels is None else " ".join(self.labels) or "(none of the labels)"

    def to_dict(self) -> dict:
        given = {} if self.labels is None else {"labels": self.labels}
        return {"path": self.path, "label": self.label, **given, "distance": round(self.distance, 6)}


@dataclass
class Similar:
    prediction: Prediction  # as `predict` gives it, with the outlier score
    neighbours: list[Neighbour] = field(default_factory=list)  # nearest first

    def to_dict(self) -> dict:
        return {**self.prediction.to_dict(), "nearest": [n.to_dict() for n in self.neighbours]}


def training_photos(run: RunDir) -> list[tuple[str, str]]:
    """(path, label) of each usable photo of the run's data, in the order its index rows count;
    a path under the run's data folder where it has one, else as split.csv names it."""
    root = Path(run.config()["data"])  # what split.csv's paths are relative to
    rows = [(r["path"], r["label"]) for r in run.split_rows() if r["status"] == "ok"]
    return [(str(root / path), label) for path, label in rows] if root.is_dir() else rows


def similar(
    run: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    k: int = 5,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool | None = None,
) -> list[Similar]:
    """Each photo's prediction and its `k` nearest training photos, in the order given;
    unreadable photos carry their error and no neighbours."""
    from ..config import check_int

    check_int("k", k, 1, 1000)
    predictor = Predictor(run, batch_size=batch_size, device=device)
    if predictor.outliers is None:
        raise PhotoclassError(
            f"{run} has no index of its training photos (outliers.safetensors). HINT: train it "
            "again with this photoclass, with --unknown-accept above 0 (the default 0.95)."
        )
    photos = training_photos(RunDir(run))
    files = with_array_items(expand_paths(paths))
    results: list[Similar] = []
    for ok, pixels, failed in predictor.decoded(files, progress=progress, desc="similar"):
        results += [Similar(p) for p in failed]
        if pixels is None:
            continue
        # one search serves both: the score is the distance to the score's own k-th nearest
        probabilities, distances, rows = predictor.nearest(pixels, max(k, predictor.outliers.k))
        for prediction, p, far, found in zip(ok, probabilities, distances, rows):
            predictor.answer(prediction, np.r_[p, far[predictor.outliers.k - 1]], 3)
            neighbours = [
                Neighbour(*photos[r], max(0.0, float(d)), given_set(photos[r][1]) if predictor.task.sets else None)
                for d, r in zip(far[:k], found[:k])
            ]
            results.append(Similar(prediction, neighbours))
    order = {str(f): i for i, f in enumerate(files)}
    return sorted(results, key=lambda s: order[s.prediction.path])


def given_set(label: str) -> list[str]:
    """A multi-label photo's labels as split.csv joins them ("a;b"; "" for none)."""
    return label.split(JOIN) if label else []


def answer_text(p: Prediction) -> str:
    """The class, or the labels decided (a multi-label run), as one phrase."""
    return p.label if p.labels is None else " ".join(p.labels) or "none of the labels"


def format_similar(found: list[Similar]) -> str:
    """A plain-text table: each photo, its prediction, then its neighbours."""
    lines = []
    for s in found:
        p = s.prediction
        if p.error:
            lines.append(f"{p.path}: skipped, {p.error}")
            continue
        said = "unknown" if p.unknown else answer_text(p)
        lines.append(f"{p.path}: {said} ({p.label} {p.confidence:.3f}, outlier score {p.outlier_score:.4f})")
        width = max(len(n.path) for n in s.neighbours)
        labels = max([14] + [len(n.shown) for n in s.neighbours if n.labels is not None])
        lines += [
            f"  {i}. {n.path:<{width}}  {n.shown:<{labels}} {n.distance:.4f}" for i, n in enumerate(s.neighbours, 1)
        ]
    return "\n".join(lines)


def write_similar_page(
    run: str | os.PathLike, found: list[Similar], out: str | os.PathLike, *, progress: bool | None = None
) -> Path:
    """An HTML page: each photo beside thumbnails of its nearest training photos, each decoded
    again; `progress=None` shows a bar only on a terminal."""
    from ..core.atomic import write_text_atomic
    from ..evaluation.html_report import page, thumbnail

    root = Path(RunDir(run).config()["data"])  # array data: the array file
    blocks = []
    for s in progress_bar(found, desc="similar page", unit="photo", progress=progress):
        p = s.prediction
        if p.error:
            blocks.append(f"<p>{html.escape(p.path)}: skipped, {html.escape(p.error)}</p>")
            continue
        said = "none of these" if p.unknown else answer_text(p)
        head = (
            f"<figure>{_image(thumbnail(Path(p.path).parent, Path(p.path).name))}<figcaption><b>"
            f"{html.escape(said)}</b> (closest: {html.escape(p.label)} {p.confidence:.0%}; outlier score "
            f"{p.outlier_score:.3f})<br>{html.escape(p.path)}</figcaption></figure>"
        )
        near = "".join(
            f"<figure>{_image(thumbnail(root, n.path))}<figcaption><b>{html.escape(n.shown)}</b> "
            f"{n.distance:.3f}<br>{html.escape(n.path)}</figcaption></figure>"
            for n in s.neighbours
        )
        blocks.append(
            f"<div class=gallery>{head}<span style='align-self:center'>nearest training photos:</span>{near}</div><hr>"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out,
        page(
            f"photoclass similar: {Path(run).name}",
            f"<h1>Nearest training photos</h1>"
            f"<p>Run {html.escape(str(run))}; distances are cosine, in the features the "
            "'none of these' check compares.</p>" + "".join(blocks),
        ),
    )
    return out


def _image(uri: str | None) -> str:
    return f"<img src='{uri}'>" if uri else "<div class=missing>photo not found</div>"
