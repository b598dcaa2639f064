"""HTTP serving: POST /predict, GET /health, GET /model, and a web page at /.

Uploads are decoded in memory by the same `decode_photo` as training, never written to disk.
Errors are JSON with the fitting status: 400 empty or malformed, 413 too large, 415 not an
allowed image format (sniffed from the bytes, not the Content-Type), 422 undecodable or a
decompression bomb, 503 when the queue is full, 408 when an upload takes longer than
`timeout` seconds to arrive and 504 when its answer does. One model call runs at a time (it
uses both cores); the photos that arrived meanwhile go into the next call as one batch, and up
to `max_queue` requests wait. With a `token`, /predict and /model answer only requests that
carry `Authorization: Bearer TOKEN` (compared in constant time) and give 401 to the rest;
/health and the page stay open, and the page asks for the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, model_serializer
from starlette.concurrency import run_in_threadpool

from ..core.errors import PhotoclassError
from ..core.version import __version__
from ..config import DEFAULT_MAX_PIXELS, check_int
from ..data.decode import DecodeError, decode_photo
from ..inference.predictor import Prediction, open_predictor
from ..runs.rundir import RunDir
from .batching import MicroBatcher

MAX_UPLOAD_BYTES = 10 * 2**20
DRAIN_FACTOR = 8  # oversized bodies up to 8x the limit are read and dropped; larger ones cut off
STATUS_FOR_DECODE_ERROR = {"empty": 400, "format": 415, "bomb": 422, "unreadable": 422}
PAGE = Path(__file__).with_name("static") / "index.html"


class ClassScore(BaseModel):
    label: str
    probability: float


class PredictionOut(BaseModel):
    label: str
    confidence: float
    unknown: bool | None = None  # far from every training photo: none of the classes (runs with the check)
    outlier_score: float | None = None
    top: list[ClassScore]
    note: str
    labels: list[str] | None = None  # a multi-label model's set: every label at or above its threshold
    scores: dict[str, float] | None = None  # and every label's probability

    @model_serializer(mode="wrap")
    def _sets_only(self, handler) -> dict[str, Any]:
        """`labels` and `scores` only where the model answers label sets: one-class answers stay as they were."""
        found = handler(self)
        for key in ("labels", "scores"):
            if found.get(key) is None:
                found.pop(key, None)
        return found


class ErrorOut(BaseModel):
    error: str


class HealthOut(BaseModel):
    status: str
    waiting: int
    mean_batch: float | None


ERRORS = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "empty or malformed request"),
        (401, "no token, or the wrong one (servers started with a token)"),
        (408, "the upload took longer than the timeout"),
        (413, "upload over the size limit"),
        (415, "not an allowed image format (sniffed from the bytes)"),
        (422, "undecodable image or decompression bomb"),
        (503, "too many requests waiting"),
        (504, "the answer took longer than the timeout"),
    )
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a photo: JPEG, PNG, GIF, WebP, BMP or TIFF",
                        }
                    },
                }
            }
        },
    }
}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(
    model: str | os.PathLike,
    *,
    top_k: int = 3,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_queue: int = 64,
    max_batch: int = 16,
    engine: str = "auto",
    port: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    tta: bool | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> FastAPI:
    """An app serving `model`: a run directory or an export (ONNX, OpenVINO, LiteRT).

    `engine` is `open_predictor`'s: by default a run is served through its fastest verified
    export, else ONNX Runtime when it is installed (exported once to RUN/model.onnx), else
    PyTorch, in `precision` (auto: as the run was trained and tested, where native).
    """
    _check_options(top_k, max_bytes, max_queue, max_batch, port, token, timeout)
    authorize = _authorizer(token)
    predictor = open_predictor(model, engine=engine, device=device, precision=precision, tta=tta)
    info = _model_info(Path(model), predictor)
    info["engine"] = predictor.engine
    info["precision"] = predictor.precision
    info["tta"] = predictor.tta
    app = FastAPI(title="photoclass", version=__version__, docs_url=None, redoc_url=None)
    app.state.engine = predictor.engine
    batcher = MicroBatcher(predictor.predict_pixels, max_batch=max_batch)
    waiting = 0

    app.add_exception_handler(ApiError, _api_error)

    @app.get("/health", response_model=HealthOut)
    async def health() -> dict[str, Any]:
        recent = batcher.batches
        return {
            "status": "ok",
            "waiting": waiting,
            "mean_batch": round(sum(recent) / len(recent), 2) if recent else None,
        }

    @app.get("/model", responses={401: ERRORS[401]})
    async def model_info(request: Request) -> dict[str, Any]:
        authorize(request)
        return info

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.post("/predict", response_model=PredictionOut, responses=ERRORS, openapi_extra=UPLOAD_BODY)
    async def predict(request: Request) -> dict[str, Any]:
        nonlocal waiting
        authorize(request)  # before a byte of the body is read
        data = await _upload(request, max_bytes, timeout)
        if waiting >= max_queue:
            raise ApiError(503, "the server is busy; try again in a moment")
        waiting += 1
        try:
            photo, p = await _decode_and_predict(data, predictor, batcher, max_pixels=max_pixels, timeout=timeout)
        finally:
            waiting -= 1
        return {**_answer(predictor, p, top_k), "note": photo.note}

    return app


def _check_options(
    top_k: int, max_bytes: int, max_queue: int, max_batch: int, port: int | None, token: str | None, timeout: float
) -> None:
    check_int("top_k", top_k, 1, 1000)
    check_int("max_bytes", max_bytes, 1, 2**34)
    check_int("max_queue", max_queue, 0, 100_000)
    check_int("max_batch", max_batch, 1, 4096)
    if port is not None:
        check_int("port", port, 1, 65535)
    check_token(token)
    if not timeout > 0:
        raise PhotoclassError(f"`timeout` must be a positive number of seconds. Received: timeout={timeout}")


def check_exposure(host: str, token: str | None, no_auth: bool) -> None:
    """Refuse a server that other machines could reach without a token, unless on purpose."""
    if token and no_auth:
        raise PhotoclassError(
            "--no-auth and a token (--token or PHOTOCLASS_TOKEN) contradict each other. HINT: drop one of them."
        )
    if not token and not no_auth and not is_loopback(host):
        raise PhotoclassError(
            f"--host {host} lets other machines in, and no token was given. HINT: pass --token "
            "TOKEN (or set PHOTOCLASS_TOKEN), or --no-auth to serve anyone on purpose."
        )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def check_token(token: str | None) -> None:
    if token is not None and len(token) < 8:
        raise PhotoclassError(
            f"The token is {len(token)} characters long: too easy to guess. HINT: use at least 8, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`."
        )


def _authorizer(token: str | None) -> Callable[[Request], None]:
    """A check of a request's `Authorization: Bearer TOKEN` (none without a `token`), raising 401."""
    expected = None if token is None else hashlib.sha256(token.encode()).digest()

    def authorize(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "this server needs a token: send `Authorization: Bearer TOKEN`")
        # equal-length digests: the comparison's time says nothing about the token, not even its length
        if not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), expected):
            raise ApiError(
                401,
                "wrong token: the one in `Authorization: Bearer TOKEN` is not this server's. "
                "HINT: send the token the server was started with (--token or PHOTOCLASS_TOKEN)",
            )

    return authorize


async def _api_error(request: Request, error: ApiError):
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)


async def _upload(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The photo's bytes; 413 for a body whose Content-Length is over the limit, before it is
    read, and 408 for an upload slower than `timeout` seconds."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        if int(length) <= DRAIN_FACTOR * max_bytes:
            # read the rest, so the client gets the 413 rather than a reset mid-upload
            async for _ in request.stream():
                pass
        raise ApiError(413, f"upload of {int(length)} bytes is over the limit of {max_bytes} bytes")
    try:
        return await asyncio.wait_for(_read_upload(request, max_bytes), timeout)
    except TimeoutError:
        raise ApiError(408, f"the upload took longer than {timeout:g} s to arrive") from None


async def _decode_and_predict(data: bytes, predictor, batcher: MicroBatcher, *, max_pixels: int, timeout: float):
    """(the decoded photo, its row of `predict_pixels`); 422 or 415 for a photo that does not
    decode, 504 when either step takes longer than `timeout` seconds."""
    try:  # decoding runs off the event loop too: a large photo must not stall the others
        photo = await asyncio.wait_for(
            run_in_threadpool(decode_photo, data, size=predictor.size, max_pixels=max_pixels), timeout
        )
        return photo, await asyncio.wait_for(batcher(photo.to_array()), timeout)
    except DecodeError as e:
        raise ApiError(STATUS_FOR_DECODE_ERROR.get(e.kind, 422), e.reason) from None
    except TimeoutError:
        raise ApiError(504, f"no answer within {timeout:g} s; the server is overloaded") from None


def _answer(predictor, row: np.ndarray, top_k: int) -> dict[str, Any]:
    """One row of `predict_pixels` as `predict --format json` shows a photo, less its path."""
    answer = predictor.answer(Prediction(""), row, max(1, min(top_k, len(predictor.classes)))).to_dict()
    del answer["path"]
    return answer


async def _read_upload(request: Request, max_bytes: int) -> bytes:
    """The bytes of the multipart field `file` (or a raw image body)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as e:  # the multipart parser's errors have no common base
            raise ApiError(400, f"malformed multipart body: {getattr(e, 'detail', e)}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            fields = ", ".join(repr(k) for k in form.keys()) or "none"
            raise ApiError(
                400,
                f"no file field named 'file' in the form (fields: {fields}); send the photo as `-F file=@photo.jpg`",
            )
        data = await upload.read(max_bytes + 1)
        if not data:
            raise ApiError(400, "the file field 'file' is empty; send the photo's bytes in it")
    else:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_bytes:
                break
        data = bytes(data)
    if len(data) > max_bytes:
        raise ApiError(413, f"upload is over the limit of {max_bytes} bytes")
    if not data:
        raise ApiError(
            400,
            "no photo in the request: send it as a multipart file field named 'file' "
            "(`curl -F file=@photo.jpg URL/predict`), or as the raw request body",
        )
    return data


def _model_info(path: Path, predictor) -> dict[str, Any]:
    info: dict[str, Any] = {"classes": predictor.classes, "input_size": predictor.size}
    if path.is_dir():
        meta = RunDir(path).model_meta()
        info.update(architecture=meta["architecture"], photoclass=meta.get("photoclass", ""))
        if RunDir(path).exists(RunDir.TEST_METRICS):
            test = RunDir(path).test_metrics()["test"]
            info["test"] = {k: test[k] for k in ("accuracy", "loss", "macro_f1", "count") if k in test}
    return info
