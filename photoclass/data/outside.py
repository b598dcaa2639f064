"""The one check that every command which writes makes: nothing goes inside the user's data.

Photos are never modified, moved or deleted, and no output (a run, a plot, a sorted copy,
an export) lands among them, where the next scan would take it for photos of a new class.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.errors import PhotoclassError

CSV_SUFFIXES = (".csv", ".tsv")


def data_folder(data: str | os.PathLike) -> Path:
    """The folder (or array file) that `data` reads from, resolved: a CSV's own folder, or the
    source of a folder written by `prepare`."""
    path = Path(data).expanduser()
    if (path / "dataset.json").is_file():  # written by `prepare`: its source is the user's data
        try:
            path = Path(json.loads((path / "dataset.json").read_text(encoding="utf-8"))["root"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if path.is_file() and path.suffix.lower() in CSV_SUFFIXES:
        path = path.parent
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
                f"HINT: pass {flag} a path outside {folder}.")
    return Path(out)
