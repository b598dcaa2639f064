"""Atomic writes: a temporary file in the same folder, flushed, fsynced and renamed.

A crash or kill during a write leaves the previous file intact, never a torn one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import PhotoclassError

MIN_FREE_BYTES = 64 * 2**20  # below this, even a run's small files may not fit


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an ordinary file follows the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def check_writable(folder: str | os.PathLike, *, need_bytes: int = 0, hint: str = "choose another folder") -> Path:
    """Create `folder` and prove it takes a file and has room, before any long work starts."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".photoclass-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PhotoclassError(f"Cannot write to {folder} ({e.strerror or e}). HINT: {hint}.") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes + MIN_FREE_BYTES:
        raise PhotoclassError(
            f"Not enough free space in {folder}: {free / 2**20:.0f} MB free, about "
            f"{(need_bytes + MIN_FREE_BYTES) / 2**20:.0f} MB needed. HINT: free some space or "
            f"{hint}."
        )
    return folder
