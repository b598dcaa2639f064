"""`photoclass label`: label photos in the order that teaches the head most, on a local page.

The photos of DATA (loose ones unlabelled; photos in class folders, or with a label in a CSV,
labelled already) are encoded once by the frozen backbone (decode and feature caches); then
`training/active.py` picks each next photo and refits the head after each answer. Answers go
to OUT/labels.csv as they are given (`data/labels_file.py`); a second run with the same OUT
picks them up. Nothing is written inside DATA.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..core.atomic import check_writable
from ..core.errors import PhotoclassError
from ..data.decode import IMAGE_SUFFIXES
from ..data.labels_file import append_label, read_labels, write_labels
from ..data.scan import is_hidden, scan_csv
from ..serve.access import check_access
from ..serve.label import create_label_app
from ..tasks import SINGLE_LABEL
from ..training.active import Head, Selector, cv_accuracy
from ..training.features import photo_features

LABELS_FILE = "labels.csv"


class LabelSession:
    """The photos, their features, the answers so far and the photo being asked about.
    Its methods are what the label page calls; they are safe to call from several threads."""

    def __init__(
        self,
        data: str | os.PathLike,
        *,
        out: str | os.PathLike,
        classes: list[str] | str | None = None,
        model: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
        seed: int = 0,
    ):
        data = Path(data).expanduser()
        found = _find_photos(data)
        self.out = _check_out(Path(out).expanduser(), data)
        self.labels_path = self.out / LABELS_FILE
        answered = read_labels(self.labels_path)
        known = {str(p): label for p, label in found if label} | answered
        self.classes = _resolve_classes(classes, known.values(), data)
        features, usable, _ = photo_features(
            [p for p, _ in found], model=model or TrainConfig().model, cache_dir=cache_dir, progress=progress
        )
        if len(usable) < 2:
            raise PhotoclassError(
                f"Only {len(usable)} photo(s) of {data} could be read. HINT: pass a folder with more photos."
            )
        self.paths = [found[i][0] for i in usable]
        class_id = {c: i for i, c in enumerate(self.classes)}
        self.label_of = np.array([class_id.get(known.get(str(p), ""), -1) for p in self.paths])
        new = {str(p): known[str(p)] for p, k in zip(self.paths, self.label_of) if k >= 0 and str(p) not in answered}
        for path, label in new.items():  # the folders' labels too, so that labels.csv alone trains
            append_label(self.labels_path, path, label)
        self.selector = Selector(features, len(self.classes), seed=seed)
        self.history: list[int] = []  # answers of this session, for undo
        self.skipped: set[int] = set()
        self._lock = threading.Lock()
        self._head: Head | None = None
        self._estimate: dict[str, Any] = {}
        self._refit()
        self.current = self._next()

    # what the page calls
    def state(self) -> dict[str, Any]:
        with self._lock:
            return self._state()

    def answer(self, photo: int, label: str) -> dict[str, Any]:
        with self._lock:
            self._check_current(photo)
            if label not in self.classes:
                raise PhotoclassError(f"Unknown class {label!r}. HINT: one of {', '.join(self.classes)}.")
            append_label(self.labels_path, str(self.paths[photo]), label)
            self.label_of[photo] = self.classes.index(label)
            self.history.append(photo)
            self._refit()
            self.current = self._next()
            return self._state()

    def skip(self, photo: int) -> dict[str, Any]:
        with self._lock:
            self._check_current(photo)
            self.skipped.add(photo)
            self.current = self._next()
            return self._state()

    def undo(self) -> dict[str, Any]:
        """The last answer of this session taken back (labels.csv rewritten), its photo asked again."""
        with self._lock:
            if self.history:
                photo = self.history.pop()
                labels = read_labels(self.labels_path)
                labels.pop(str(self.paths[photo]), None)
                write_labels(self.labels_path, labels)
                self.label_of[photo] = -1
                self._refit()
                self.current = photo
            return self._state()

    def photo_path(self, photo: int) -> Path:
        if not 0 <= photo < len(self.paths):
            raise KeyError(photo)
        return self.paths[photo]

    # the work behind them
    def _labelled(self) -> np.ndarray:
        return np.flatnonzero(self.label_of >= 0)

    def _refit(self) -> None:
        labelled = self._labelled()
        y = self.label_of[labelled]
        self._head = self.selector.fit(labelled, y, init=self._head) if len(labelled) else None
        self._estimate = cv_accuracy(self.selector.x[labelled], y)

    def _next(self) -> int | None:
        return self.selector.next(self._labelled(), self._head, skip=np.array(sorted(self.skipped), dtype=np.int64))

    def _check_current(self, photo: int) -> None:
        if photo != self.current:
            raise PhotoclassError(f"Photo {photo} is not the one being asked about ({self.current}); reload the page.")

    def _state(self) -> dict[str, Any]:
        guess = None
        if self.current is not None and self._head is not None and len(self._head.classes) >= 2:
            with torch.no_grad():
                p = self._head.probabilities(self.selector.x[[self.current]], len(self.classes))[0]
            guess = {
                "label": self.classes[int(SINGLE_LABEL.decide(p[None])[0])],
                "probability": round(float(p.max()), 4),
                "scores": {c: round(float(v), 4) for c, v in zip(self.classes, p)},
            }
        counts = np.bincount(self.label_of[self.label_of >= 0], minlength=len(self.classes))
        return {
            "classes": self.classes,
            "labelled": int((self.label_of >= 0).sum()),
            "per_class": dict(zip(self.classes, counts.tolist())),
            "photos": len(self.paths),
            "skipped": len(self.skipped),
            "estimate": self._estimate,
            "can_undo": bool(self.history),
            "current": None
            if self.current is None
            else {"id": int(self.current), "name": self.paths[self.current].name, "guess": guess},
            "labels_file": str(self.labels_path),
        }


def label(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    classes: list[str] | str | None = None,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    no_auth: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    log_requests: bool = False,
) -> None:
    """Serve the labelling page for the photos of `data` at http://host:port/ until stopped;
    answers go to OUT/labels.csv (`train OUT/labels.csv` takes it). `model`: the frozen
    backbone (default: training's). `host` beyond this machine needs a `token` or `no_auth`."""
    import uvicorn

    token = check_access(host, token, no_auth)
    session = LabelSession(data, out=out, classes=classes, model=model, cache_dir=cache_dir, progress=progress)
    app = create_label_app(session, token=token)
    state = session.state()
    print(
        f"labelling {state['photos']} photos ({state['labelled']} labelled) at http://{host}:{port}/ "
        f"({'token required' if token else 'no token'}); answers go to {session.labels_path} (Ctrl-C to stop)",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="info" if log_requests else "warning", timeout_keep_alive=5)


def _find_photos(data: Path) -> list[tuple[Path, str | None]]:
    """(absolute path, label or None) of each photo: loose photos unlabelled, photos in a
    class folder (at any depth) labelled with its name; a CSV's rows with their labels."""
    if not data.exists():
        raise PhotoclassError(f"Folder not found: {data}. HINT: check the path.")
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise PhotoclassError(
                f"Expected a folder of photos or a CSV, received a file: {data}. HINT: pass the folder."
            )
        return [(p.path, p.label) for p in scan_csv(data).photos]
    data = data.resolve()
    found: list[tuple[Path, str | None]] = []
    for entry in sorted(data.iterdir()):
        if is_hidden(entry.name):
            continue
        if entry.is_dir():
            found += [(p, entry.name) for p in sorted(entry.rglob("*")) if _is_photo(p, entry)]
        elif _is_photo(entry, data):
            found.append((entry, None))
    if not found:
        raise PhotoclassError(
            f"No photos found in {data}. Allowed formats: {', '.join(sorted(IMAGE_SUFFIXES))}. "
            "HINT: pass the folder that holds the photos."
        )
    return found


def _is_photo(path: Path, root: Path) -> bool:
    hidden = any(is_hidden(part) for part in path.relative_to(root).parts)
    return not hidden and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _check_out(out: Path, data: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise PhotoclassError(
            f"--out must be a folder; {out} is a file. HINT: pass a folder, e.g. {out.parent}/labels."
        )
    folder = data.resolve() if data.is_dir() else data.resolve().parent
    if out.resolve() == folder or folder in out.resolve().parents:
        raise PhotoclassError(
            f"--out {out} is inside the photos' folder {folder}; photoclass never writes there. "
            "HINT: pass a folder outside it."
        )
    return check_writable(out, hint="pass another --out folder")


def _resolve_classes(classes, known, data: Path) -> list[str]:
    """The classes: those given (in their order), then any known label not among them."""
    given = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes or [])
    for name in given:
        if not name:
            raise PhotoclassError(f"An empty class name in --classes {','.join(given)}. HINT: e.g. --classes cat,dog.")
        if given.count(name) > 1:
            raise PhotoclassError(f"Class {name!r} is given twice in --classes. HINT: name each class once.")
        if any(ch in name for ch in ",;\n"):
            raise PhotoclassError(
                f"Class name {name!r} holds , or ; (labelling is single-label: one class a photo). "
                "HINT: a name without them."
            )
    found = given + sorted(set(known) - set(given))
    if len(found) < 2:
        raise PhotoclassError(
            f"Labelling needs at least 2 classes; found {found or 'none'} for {data}. "
            "HINT: name them, e.g. --classes cat,dog (single-label only: one class a photo)."
        )
    return found
