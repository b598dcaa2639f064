"""The review page's server: queues of photos to look at, and each action written to
corrections.csv before it is answered.

GET / (the page) and /health are open; with a `token`, everything else answers only requests
that carry `Authorization: Bearer TOKEN`, as `serve` does. Photos are served from their own
files, read only (array images as PNG); nothing is written but the corrections file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ..core.errors import PhotoclassError
from ..core.version import __version__
from ..data.corrections import ACTIONS, CorrectionsLog
from .access import ApiError, api_error, authorizer
from .review_queues import ReviewData, ReviewPhoto

PAGE = Path(__file__).with_name("static") / "review.html"


def create_review_app(review: ReviewData, corrections: str | os.PathLike, *, token: str | None = None) -> FastAPI:
    """The review page over `review` (see `build_review`), appending to `corrections`."""
    authorize = authorizer(token)
    log = CorrectionsLog(corrections)  # a session resumes from the rows already there
    app = FastAPI(title="photoclass review", version=__version__, docs_url=None, redoc_url=None)
    app.add_exception_handler(ApiError, api_error)
    heatmaps = _Heatmaps(review)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "corrections": len(log.rows)}

    @app.get("/api/session")
    async def session(request: Request) -> dict[str, Any]:
        authorize(request)
        return {
            "run": str(review.run),
            "corrections": str(log.path),
            "classes": review.classes,
            "multi_label": review.multi_label,
            "input_size": review.input_size,
            "queues": [vars(q) for q in review.queues],
            "confusion": review.confusion,
            "photos": {p.id: _shown(review, p) for p in _listed(review)},
            "done": {sha: _said(c) for sha, c in log.latest().items()},
        }

    @app.get("/photo/{photo_id}")
    async def photo(photo_id: int, request: Request):
        authorize(request)
        found = _photo(review, photo_id)
        if found.file is None:
            return Response(_png(review.pixels(found)), media_type="image/png")
        if not found.file.is_file():
            raise ApiError(404, f"{found.file} is gone")
        return FileResponse(found.file)  # opened read-only, sent as it is

    @app.get("/gradcam/{photo_id}")
    async def gradcam(photo_id: int, request: Request, label: str | None = None):
        authorize(request)
        found = _photo(review, photo_id)
        if label is not None and label not in review.classes:
            raise ApiError(400, f"unknown label {label!r}; the model's classes are {', '.join(review.classes)}")
        try:
            image = await run_in_threadpool(heatmaps, found, label)
        except (ValueError, OSError, PhotoclassError) as e:
            raise ApiError(422, f"no Grad-CAM for {found.path}: {e}") from None
        return Response(_png(image), media_type="image/png")

    @app.post("/api/action")
    async def action(request: Request) -> dict[str, Any]:
        authorize(request)
        body = await _json(request)
        found = _photo(review, body.get("id"))
        chosen = body.get("action")
        if chosen not in ACTIONS:
            raise ApiError(400, f"unknown action {chosen!r}; use one of {', '.join(ACTIONS)}")
        new_label = str(body.get("new_label") or "") if chosen == "relabel" else ""
        if chosen == "relabel" and not new_label.split():
            raise ApiError(400, "relabel to an empty name; give new_label, or drop the photo")
        # written (atomically) before the answer: a server killed after it loses nothing
        c = log.append(
            sha256=found.sha256, path=found.path, old_label=found.old_label, action=chosen, new_label=new_label
        )
        return {"sha256": c.sha256, "done": _said(c), "corrections": len(log.rows)}

    @app.post("/api/undo")
    async def undo(request: Request) -> dict[str, Any]:
        authorize(request)
        taken = log.undo()
        if taken is None:
            raise ApiError(409, "nothing to undo")
        now = log.latest().get(taken.sha256)
        return {"sha256": taken.sha256, "undone": _said(taken), "done": None if now is None else _said(now)}

    return app


def _listed(review: ReviewData) -> list[ReviewPhoto]:
    """The photos in a queue or a cell of the confusion matrix."""
    ids = {i for q in review.queues for i in q.ids}
    ids |= {i for row in review.confusion or [] for cell in row for i in cell}
    return [review.photos[i] for i in sorted(ids)]


def _shown(review: ReviewData, photo: ReviewPhoto) -> dict[str, Any]:
    found = photo.to_dict()
    for near in found["nearest"]:
        other = review.photos[near["id"]]
        near.update(path=other.path, labels=other.labels)
    return found


def _said(c) -> dict[str, str]:
    return {"action": c.action, "new_label": c.new_label}


def _photo(review: ReviewData, photo_id: Any) -> ReviewPhoto:
    if isinstance(photo_id, bool) or not isinstance(photo_id, int) or not 0 <= photo_id < len(review.photos):
        raise ApiError(404, f"no photo {photo_id!r} in this review")
    return review.photos[photo_id]


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not JSON; send {'id': N, 'action': ..., 'new_label': ...}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _Heatmaps:
    """Grad-CAM overlays of the run's model (loaded on first use, in float32 on the CPU)."""

    def __init__(self, review: ReviewData):
        self.review = review
        self.model = None

    def __call__(self, photo: ReviewPhoto, label: str | None) -> np.ndarray:
        import torch

        from ..data.arrays import load_photo
        from ..data.decode import decode_photo
        from ..data.loader import normalize, to_float
        from ..evaluation.gradcam import gradcam, overlay
        from ..runs.rundir import load_model

        if self.model is None:
            self.model, _ = load_model(self.review.run)
        spec = self.model.input_spec
        if photo.split == "new":
            decoded = decode_photo(photo.file, size=spec.size)
        else:
            decoded = load_photo(self.review.root, photo.path, size=spec.size)
        pixels = decoded.to_array()
        x = normalize(to_float(torch.from_numpy(pixels[None].copy())), spec.mean, spec.std)
        target = None if label is None else self.review.classes.index(label)
        heatmap, _ = gradcam(self.model, x, target)
        return overlay(pixels, heatmap)
