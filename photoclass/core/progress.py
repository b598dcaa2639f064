"""Progress bars, one way everywhere: tqdm on stderr, cleared when done."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(iterable=None, *, progress: bool | None, **options) -> tqdm:
    """A tqdm bar (`options`: total, desc, unit, ...) that leaves no line behind; `progress`
    True shows it, False hides it, None shows it only on a terminal."""
    return tqdm(iterable, leave=False, disable=None if progress is None else not progress, **options)
