"""The labelling page's HTTP side: GET /state, GET /photo/ID, POST /answer, /skip, /undo,
GET /health, and the page at /.

The work is the session's (workflows/label.py's `LabelSession`: state, answer, skip, undo,
photo_path); this module only speaks HTTP, with `serve`'s token rules: with a token, every
route but / and /health needs `Authorization: Bearer TOKEN`. Photos are sent downscaled,
as JPEG, read from the user's files and never written anywhere.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from PIL import Image, ImageOps
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..core.errors import PhotoclassError
from ..core.version import __version__
from .access import ApiError, api_error, authorizer, check_token

PAGE = Path(__file__).with_name("static") / "label.html"
SHOWN_SIDE = 1024  # px: the longer side of the photo sent to the page


class Session(Protocol):
    def state(self) -> dict[str, Any]: ...
    def answer(self, photo: int, label: str) -> dict[str, Any]: ...
    def skip(self, photo: int) -> dict[str, Any]: ...
    def undo(self) -> dict[str, Any]: ...
    def photo_path(self, photo: int) -> Path: ...


class AnswerIn(BaseModel):
    photo: int
    label: str


class SkipIn(BaseModel):
    photo: int


def create_label_app(session: Session, *, token: str | None = None) -> FastAPI:
    """An app serving `session` to the labelling page."""
    check_token(token)
    authorize = authorizer(token)
    app = FastAPI(title="photoclass label", version=__version__, docs_url=None, redoc_url=None)
    app.add_exception_handler(ApiError, api_error)

    async def call(method, *args):
        try:
            return await run_in_threadpool(method, *args)
        except PhotoclassError as e:
            raise ApiError(409, str(e)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        authorize(request)
        return await call(session.state)

    @app.post("/answer")
    async def answer(request: Request, body: AnswerIn) -> dict[str, Any]:
        authorize(request)
        return await call(session.answer, body.photo, body.label)

    @app.post("/skip")
    async def skip(request: Request, body: SkipIn) -> dict[str, Any]:
        authorize(request)
        return await call(session.skip, body.photo)

    @app.post("/undo")
    async def undo(request: Request) -> dict[str, Any]:
        authorize(request)
        return await call(session.undo)

    @app.get("/photo/{photo}")
    async def photo(request: Request, photo: int) -> Response:
        authorize(request)
        try:
            path = session.photo_path(photo)
        except KeyError:
            raise ApiError(404, f"no photo {photo}") from None
        data = await run_in_threadpool(_shown, path)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return app


def _shown(path: Path) -> bytes:
    """The photo upright, at most SHOWN_SIDE px a side, as JPEG bytes."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image.thumbnail((SHOWN_SIDE, SHOWN_SIDE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()
