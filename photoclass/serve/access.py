"""Who may use a server: loopback by default, a bearer token to listen beyond this machine.

What `serve`, `review` and `label` share: the start-up check of --host, --token and --no-auth
(`check_access`), and each request's check of its `Authorization: Bearer TOKEN` (`authorizer`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from ..core.errors import PhotoclassError


class ApiError(Exception):
    """An HTTP error answered as JSON `{"error": message}` (see `api_error`)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def api_error(request: Request, error: ApiError):
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def check_access(host: str, token: str | None, no_auth: bool = False) -> str | None:
    """The token a server started on `host` requires (`token`, else $PHOTOCLASS_TOKEN, else
    none); refuses a host beyond this machine without one, unless `no_auth`, and a short token."""
    token = token or os.environ.get("PHOTOCLASS_TOKEN") or None
    if token and no_auth:
        raise PhotoclassError(
            "--no-auth and a token (--token or PHOTOCLASS_TOKEN) contradict each other. HINT: drop one of them."
        )
    if not token and not no_auth and not is_loopback(host):
        raise PhotoclassError(
            f"--host {host} lets other machines in, and no token was given. HINT: pass --token "
            "TOKEN (or set PHOTOCLASS_TOKEN), or --no-auth to serve anyone on purpose."
        )
    check_token(token)
    return token


def check_token(token: str | None) -> None:
    if token is not None and len(token) < 8:
        raise PhotoclassError(
            f"The token is {len(token)} characters long: too easy to guess. HINT: use at least 8, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`."
        )


def authorizer(token: str | None) -> Callable[[Request], None]:
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
