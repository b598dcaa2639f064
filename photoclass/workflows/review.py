"""`review()`: a local web page to look at a run's doubtful photos and fix their labels.

Every action (keep, relabel, drop, outsider) is appended to OUT/corrections.csv before the
page hears back; `train DATA --corrections OUT/corrections.csv` applies them. The photos are
never touched, and OUT is never inside their folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from ..core.atomic import check_writable
from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from ..runs.rundir import RunDir
from ..serve.access import check_access
from ..serve.review import create_review_app
from ..serve.review_queues import build_review, check_run

CORRECTIONS = "corrections.csv"
CACHE = "model-outputs.npz"  # beside corrections.csv: the model's outputs on the run's photos, for the next start


def review_app(
    run: str | os.PathLike,
    *,
    photos: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    token: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> FastAPI:
    """The review page's app for `run` (`photos`: a folder of new photos to sort out too),
    writing OUT/corrections.csv (OUT: RUN/review by default)."""
    corrections = corrections_path(run, out, photos)
    found = build_review(run, photos=photos, cache=corrections.with_name(CACHE), device=device, progress=progress)
    return create_review_app(found, corrections, token=token)


def review(
    run: str | os.PathLike,
    *,
    photos: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    no_auth: bool = False,
    device: str = "auto",
    progress: bool | None = None,
    announce=print,
) -> None:
    """Serve the review page of `run` at http://HOST:PORT/ until stopped: loopback by default,
    a token (or $PHOTOCLASS_TOKEN) to listen beyond this machine, as `serve`."""
    import uvicorn

    from ..config import check_int

    check_int("port", port, 1, 65535)
    token = check_access(host, token, no_auth)
    corrections_path(run, out, photos)  # bad input said before the long start
    announce(f"reading {run}'s photos: each is predicted once, then kept beside corrections.csv ...")
    app = review_app(run, photos=photos, out=out, token=token, device=device, progress=progress)
    guard = "token required" if token else "no token"
    announce(f"reviewing {run} at http://{host}:{port}/ ({guard}; Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)


def corrections_path(
    run: str | os.PathLike, out: str | os.PathLike | None, photos: str | os.PathLike | None = None
) -> Path:
    """OUT/corrections.csv, checked: OUT outside the run's data and `photos`, and writable."""
    run_dir = RunDir(run)
    check_run(run_dir)
    if photos is not None and not Path(photos).is_dir():
        raise PhotoclassError(f"--photos {photos}: no such folder. HINT: pass a folder of new photos.")
    folder = Path(out) if out is not None else run_dir / RunDir.REVIEW
    check_outside(folder, run_dir.data_source(), photos)
    if folder.exists() and not folder.is_dir():
        raise PhotoclassError(f"--out {folder} is a file. HINT: pass a folder for corrections.csv.")
    check_writable(folder, hint="pass another --out")
    return folder / CORRECTIONS
