"""Label corrections: a CSV kept beside the photos, never a change to them.

`corrections.csv` holds one row per reviewer action, `sha256,path,old_label,action,new_label,time`:
`keep` (the label is right), `relabel` (to `new_label`; for label sets the whole new set,
space-separated), `drop` (leave the photo out of training) or `outsider` (a photo of no known
class: used to set the "unknown" threshold, never as a class). Rows are matched to photos by
the SHA-256 of the file's bytes, so a renamed or moved photo still matches; the last row of a
photo wins. `CorrectionsLog` writes the file (each action rewrites it atomically, so a killed
reviewer loses nothing already clicked); `read_corrections` reads and checks one or several.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..core.atomic import write_text_atomic
from ..core.errors import PhotoclassError
from .labelsets import JOIN

COLUMNS = ("sha256", "path", "old_label", "action", "new_label", "time")
ACTIONS = ("keep", "relabel", "drop", "outsider")
REMOVING = ("drop", "outsider")
CORRECTED = "corrected:"  # starts the manifest's reason for a photo a correction changed  # actions that take a photo out of the classes
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Correction:
    sha256: str
    path: str  # where the photo was when it was reviewed (for people; matching is by sha256)
    old_label: str
    action: str
    new_label: str  # relabel: the new class, or a label set's labels parted by spaces
    time: str
    where: str = ""  # file:row, for messages

    @property
    def new_labels(self) -> list[str]:
        """The new label set of a relabel (one item for one class)."""
        return self.new_label.split()

    def row(self) -> list[str]:
        return [self.sha256, self.path, self.old_label, self.action, self.new_label, self.time]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(image) -> str:
    """The SHA-256 of one array image (its shape, then its bytes): what corrects an item of an array data set."""
    return hashlib.sha256(repr(tuple(image.shape)).encode() + image.tobytes()).hexdigest()


def files_sha256(paths: Sequence[str | os.PathLike], workers: int = 2) -> list[str]:
    with ThreadPoolExecutor(max(1, workers)) as pool:  # hashlib releases the GIL on large buffers
        return list(pool.map(file_sha256, paths, chunksize=64))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CorrectionsLog:
    """The corrections file a review writes: every action is in the file before `append` returns."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: list[Correction] = _read_one(self.path) if self.path.exists() else []

    def append(self, *, sha256: str, path: str, old_label: str, action: str, new_label: str = "") -> Correction:
        found = check_correction(
            Correction(sha256, str(path), old_label, action, " ".join(new_label.split()), now(), "the new action")
        )
        self._write([*self.rows, found])
        self.rows.append(found)
        return found

    def undo(self) -> Correction | None:
        """Takes the last action back (removes its row); None when there is none."""
        if not self.rows:
            return None
        self._write(self.rows[:-1])
        return self.rows.pop()

    def latest(self) -> dict[str, Correction]:
        return {c.sha256: c for c in self.rows}

    def _write(self, rows: list[Correction]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(c.row() for c in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, buffer.getvalue())


def check_correction(c: Correction) -> Correction:
    """`c`, checked; a PhotoclassError naming its row and the fix otherwise."""
    if not _HEX64.fullmatch(c.sha256):
        raise PhotoclassError(
            f"{c.where}: sha256 {c.sha256!r} is not a SHA-256 (64 hex digits). "
            "HINT: write the digest of the photo's bytes (sha256sum PHOTO)."
        )
    if c.action not in ACTIONS:
        raise PhotoclassError(f"{c.where}: unknown action {c.action!r}. HINT: use one of {', '.join(ACTIONS)}.")
    if c.action == "relabel" and not c.new_label.strip():
        raise PhotoclassError(
            f"{c.where}: relabel to an empty name. HINT: give new_label (for a label set, its labels "
            "parted by spaces), or use drop to leave the photo out."
        )
    return c


def read_corrections(paths: Sequence[str | os.PathLike]) -> dict[str, Correction]:
    """The last correction of each photo (by sha256) over `paths`; refuses files that disagree."""
    chosen: dict[str, Correction] = {}
    for path in paths:
        latest = {c.sha256: c for c in _read_one(Path(path))}
        for key, c in latest.items():
            other = chosen.get(key)
            if other is not None and (other.action, other.new_label) != (c.action, c.new_label):
                raise PhotoclassError(
                    f"{other.where} says {_said(other)} but {c.where} says {_said(c)} for the same photo "
                    f"({c.path}). HINT: keep one of the two rows, or pass only one corrections file."
                )
            chosen[key] = c
    return chosen


def _said(c: Correction) -> str:
    return f"relabel to {c.new_label!r}" if c.action == "relabel" else c.action


def _read_one(path: Path) -> list[Correction]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PhotoclassError(f"No corrections file at {path}. HINT: check the path.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PhotoclassError(f"Cannot read the corrections file {path} ({e}). HINT: pass a UTF-8 CSV.") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != list(COLUMNS):
        raise PhotoclassError(
            f"{path}:1: the header is {','.join(header or [])!r}, not {','.join(COLUMNS)!r}. "
            "HINT: a corrections file starts with that header (photoclass review writes it)."
        )
    rows = []
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(COLUMNS):
            raise PhotoclassError(
                f"{path}:{line}: {len(cells)} cells, not {len(COLUMNS)}. HINT: quote a path that holds a comma."
            )
        c = Correction(*(cell.strip() for cell in cells), where=f"{path}:{line}")
        rows.append(check_correction(replace(c, sha256=c.sha256.lower(), new_label=" ".join(c.new_label.split()))))
    return rows


@dataclass
class Overlay:
    """Corrections matched to photos: each photo's correction (or None) and the rows that matched none."""

    found: list[Correction | None]
    unmatched: list[Correction]

    def label(self, i: int, label: str, *, multi_label: bool) -> str:
        """Photo i's label after its correction (a relabel's new class, or new set joined by `JOIN`)."""
        c = self.found[i]
        if c is None or c.action != "relabel":
            return label
        return JOIN.join(sorted(set(c.new_labels))) if multi_label else c.new_label

    def removed(self, i: int) -> str | None:
        """ "drop" or "outsider" when photo i leaves the classes, else None."""
        c = self.found[i]
        return c.action if c is not None and c.action in REMOVING else None

    def counts(self) -> dict[str, int]:
        counts = {a: 0 for a in ACTIONS}
        for c in self.found:
            if c is not None:
                counts[c.action] += 1
        return counts


def match(shas: Sequence[str], corrections: dict[str, Correction]) -> Overlay:
    """Each photo's correction, by its SHA-256 (copies of one photo share it)."""
    found = [corrections.get(s) for s in shas]
    seen = set(shas)
    return Overlay(found, [c for key, c in corrections.items() if key not in seen])


def describe(c: Correction, old_label: str) -> str:
    """What a correction did to one photo, for the manifest's reason column."""
    if c.action == "relabel":
        return f"{CORRECTED} relabel {old_label or '(none)'} -> {c.new_label} ({c.where})"
    return f"{CORRECTED} {c.action} ({c.where})"
