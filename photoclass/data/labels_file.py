"""labels.csv, the answers of `photoclass label`: a header `path,label`, then one photo a row,
its absolute path, so `train DIR/labels.csv` finds the photos from any folder.

An answer is appended and flushed to disk before it is acknowledged (a SIGKILL loses none);
taking one back rewrites the file atomically.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..core.atomic import write_text_atomic
from ..core.errors import PhotoclassError

HEADER = ("path", "label")


def read_labels(path: Path) -> dict[str, str]:
    """path -> label of each row (a later row of the same photo wins); {} when there is no file."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0][:2]) != HEADER:
        raise PhotoclassError(
            f"{path} does not start with the header `path,label` (found {','.join(rows[0]) if rows else 'nothing'}). "
            "HINT: pass another --out folder, or move that file away."
        )
    found: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < 2 or not row[0].strip():
            raise PhotoclassError(f"{path}:{line} is not `path,label`: {row}. HINT: fix or delete that row.")
        found[row[0]] = row[1].strip()
    return found


def append_label(path: Path, photo: str, label: str) -> None:
    """One answer added to the file (with the header if new), on disk when this returns."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        f.write(_rows([HEADER] if new else []) + _rows([(photo, label)]))
        f.flush()
        os.fsync(f.fileno())


def write_labels(path: Path, labels: dict[str, str]) -> None:
    """The whole file rewritten atomically with `labels` (path -> label)."""
    write_text_atomic(path, _rows([HEADER, *labels.items()]))


def _rows(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
