"""Guards of the server: bearer token, request-size cap, security headers, loopback binding."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.errors import InvalidArgument

#: Scripts, styles, fonts, images and fetches from this origin only; blob: carries images fetched with a token.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
#: Host names a loopback-bound server answers to; any other Host header is a DNS-rebinding attempt.
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a bearer token."""
    if not is_loopback(host) and not token:
        raise InvalidArgument(
            f"refusing to serve on {host} without a token: anyone who can reach it could browse your images. "
            "Pass --token SECRET (or set LOOKALIKE_TOKEN), or bind to 127.0.0.1"
        )


#: Declared through :class:`~fastapi.security.HTTPBearer`, so the OpenAPI spec documents the scheme.
BEARER = HTTPBearer(auto_error=False, description="the token given to `lookalike serve --token`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def bearer_guard(token: str) -> Callable[..., None]:
    """A FastAPI dependency admitting only requests that carry ``Authorization: Bearer <token>``."""
    expected = token.encode()

    def guard(credentials: Credentials) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        # compare_digest: the time taken does not tell how much of a guess was right.
        if not secrets.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return guard


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in SECURITY_HEADERS if name not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware refusing request bodies larger than ``max_bytes`` with 413.

    A declared Content-Length is checked before anything is read; a chunked
    body is counted as it arrives and stopped at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"upload too large: the limit is {self.max_bytes:,} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._message()}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions met while reading a body, so this becomes the 413.
                    raise HTTPException(status_code=413, detail=self._message())
            return message

        await self.app(scope, counted_receive, send)
