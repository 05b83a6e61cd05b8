"""Guards of the server: bearer token, request-size cap, security headers, loopback binding, Host and Origin."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Iterable
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
#: Host names a loopback-bound server answers to besides its own address; any other is a DNS-rebinding attempt.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Methods a page on another site may send without the browser asking first; any other is refused cross-origin.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


def host_name(header: str) -> str:
    """The name a Host header addresses, without port or IPv6 brackets; IP addresses in their usual spelling.

    Examples
    --------
    >>> host_name("[::1]:8000"), host_name("LocalHost:80"), host_name("127.0.0.2"), host_name("[0:0::1]")
    ('::1', 'localhost', '127.0.0.2', '::1')
    """
    name = header.strip().lower()
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def loopback_hosts(host: str) -> list[str]:
    """The Host names a server bound to the loopback address ``host`` answers to: the loopback names and ``host``."""
    return [*LOOPBACK_NAMES, host_name(host)]


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a bearer token."""
    if not is_loopback(host) and not token:
        raise InvalidArgument(
            f"refusing to serve on {host} without a token: anyone who can reach it could browse your images. "
            "Pass --token SECRET (or set LOOKALIKE_TOKEN), or bind to 127.0.0.1"
        )


def _refuse(status: int, message: str) -> JSONResponse:
    """The API's error body, for middleware that answers before any route (and its handlers) runs."""
    return JSONResponse({"detail": message}, status_code=status)


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
            await _refuse(413, self._message())(scope, receive, send)
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


class HostGuard:
    """ASGI middleware refusing with 400 a request whose Host header names none of ``allowed_hosts``.

    A page on another site that points a DNS name it controls at this
    machine (DNS rebinding) still sends that name as the Host.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.allowed:
                names = ", ".join(sorted(self.allowed))
                await _refuse(400, f"unknown Host {header!r}: this server answers to {names}")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class OriginGuard:
    """ASGI middleware refusing with 403 a POST (or any unsafe method) sent by a page of another origin.

    Browsers send an upload form to any site without asking it first; the
    ``Origin`` header says which page sent it. Allowed: no Origin (not a
    browser), this server's own origin, and the ``allowed_origins`` of CORS.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            if origin is not None:
                origin_text = origin.decode("latin-1").lower()
                own = f"{scope['scheme']}://{headers.get(b'host', b'').decode('latin-1').lower()}"
                if origin_text != own and origin_text not in self.allowed and "*" not in self.allowed:
                    message = f"cross-origin {scope['method']} from {origin_text} refused (allow it with --cors)"
                    await _refuse(403, message)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
