"""The one check that every command which writes makes: nothing goes inside the user's data.

Photos are never modified, moved or deleted, and no output (a run, a plot, a sorted copy,
an export) lands among them, where the next scan would take it for photos of a new class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.errors import PhotoclassError


def data_folder(data: str | os.PathLike) -> Path:
    """What `data` reads, resolved: a folder of photos, an array file, a CSV of labels (whose
    folder may hold anything else, as its rows name their photos), or what a folder written
    by `prepare` was made from."""
    path = Path(data).expanduser()
    if (path / "dataset.json").is_file():  # written by `prepare`: its source is the user's data
        try:
            summary = json.loads((path / "dataset.json").read_text(encoding="utf-8"))["summary"]
            path = Path(summary.get("source", summary["root"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return path.resolve()


def check_outside(out: str | os.PathLike, *data: str | os.PathLike | None, flag: str = "--out") -> Path:
    """Refuse `out` when it is, or is inside, a data folder of `data`; return it unchanged."""
    target = Path(out).expanduser().resolve()
    for source in data:
        if source is None:
            continue
        folder = data_folder(source)
        if target == folder or folder in target.parents:
            raise PhotoclassError(
                f"{flag} {out} is inside the data folder {folder}: photoclass never writes among your photos. "
                f"HINT: pass {flag} a path outside {folder}."
            )
    return Path(out)
