"""Guards of the server: bearer token, request-size cap, security headers, loopback binding, Host and Origin."""

from __future__ import annotations

import contextlib
import ipaddress
import re
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


#: A name in a Host header: letters, digits, hyphens and dots (IPv4 addresses included), as DNS allows.
_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?\Z")
#: A port in a Host header: digits only, at most 5.
_PORT = re.compile(r"[0-9]{1,5}\Z")


def host_name(header: str) -> str | None:
    """The host a Host header names, read whole as a URL's authority; None when the value is not one.

    An authority here is a bracketed IPv6 address or a name (IPv4 addresses
    included), then optionally ``:PORT`` (digits), then nothing: no user
    information (``user@``), nothing after the bracket or the port. Names come
    back lower-case, IP addresses in their usual spelling.

    Examples
    --------
    >>> host_name("[::1]:8000"), host_name("LocalHost:80"), host_name("127.0.0.2"), host_name("[0:0::1]")
    ('::1', 'localhost', '127.0.0.2', '::1')
    >>> [host_name(h) for h in ("[::1].evil.com", "[::1]:80.evil.com", "127.0.0.1:80@evil.com", "::1", "")]
    [None, None, None, None, None]
    """
    value = header.strip().lower()
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        if not bracket:
            return None
        try:
            name = ipaddress.IPv6Address(literal).compressed
        except ValueError:  # a zone (%eth0) or anything else that is not an IPv6 address
            return None
    else:
        name = value.partition(":")[0]
        rest = value[len(name) :]
        if not _NAME.match(name):
            return None
        with contextlib.suppress(ValueError):  # a name, not an IPv4 address
            name = ipaddress.IPv4Address(name).compressed
    if rest and not (rest.startswith(":") and _PORT.match(rest[1:])):
        return None
    return name


def loopback_hosts(host: str) -> list[str]:
    """The Host names a server bound to the loopback address ``host`` answers to: the loopback names and ``host``."""
    return [*LOOPBACK_NAMES, host]


def allowed_host(name: str) -> str:
    """``name`` (a host, optionally with a port; an IPv6 address bracketed or bare) as :func:`host_name` reads it.

    Examples
    --------
    >>> allowed_host("::1"), allowed_host("[::1]:8000"), allowed_host("LocalHost")
    ('::1', '::1', 'localhost')
    """
    canonical = host_name(name) or host_name(f"[{name}]")
    if canonical is None:
        raise InvalidArgument(f"allowed host {name!r} is neither a host name nor an IP address (with an optional port)")
    return canonical


def check_bind(host: str, token: str | None, cors: Iterable[str] | None = None) -> None:
    """Refuse to listen beyond this machine, or to let other sites' pages call the API, without a bearer token."""
    if not is_loopback(host) and not token:
        raise InvalidArgument(
            f"refusing to serve on {host} without a token: anyone who can reach it could browse your images. "
            "Pass --token SECRET (or set LOOKALIKE_TOKEN), or bind to 127.0.0.1"
        )
    if cors and not token:
        # With CORS and no token, a page of an allowed origin (any site, for '*') can POST decisions and applies.
        raise InvalidArgument(
            f"refusing --cors {' '.join(cors)} without a token: pages of that origin could change your decisions "
            "and move files. Pass --token SECRET (or set LOOKALIKE_TOKEN) as well"
        )


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error body, for middleware that answers before any route (and its handlers) runs."""
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


#: Declared through :class:`~fastapi.security.HTTPBearer`, so the OpenAPI spec documents the scheme.
BEARER = HTTPBearer(auto_error=False, description="the token given to `lookalike serve --token`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


#: The answer to a request without the right token, from the route dependency and the middleware alike.
TOKEN_REFUSAL = "missing or wrong bearer token (send 'Authorization: Bearer <token>')"
TOKEN_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def token_matches(given: str | None, token: str) -> bool:
    """Whether ``given`` (the credentials of an ``Authorization: Bearer`` header) is ``token``."""
    # compare_digest: the time taken does not tell how much of a guess was right.
    return secrets.compare_digest((given or "").encode(), token.encode())


def bearer_guard(token: str) -> Callable[..., None]:
    """A FastAPI dependency admitting only requests that carry ``Authorization: Bearer <token>``.

    :class:`BearerToken` refuses the others before their body is read; this
    dependency declares the scheme in the OpenAPI spec, and guards routes
    mounted without that middleware.
    """

    def guard(credentials: Credentials) -> None:
        if not token_matches(credentials.credentials if credentials is not None else None, token):
            raise HTTPException(status_code=401, detail=TOKEN_REFUSAL, headers=TOKEN_CHALLENGE)

    return guard


class BearerToken:
    """ASGI middleware refusing with 401, before anything reads its body, a request without the bearer token.

    Every path needs it but the page (``/``) and its assets (``/static/``),
    which a browser opens without the header (the page then sends it).
    """

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/" and not scope["path"].startswith("/static/"):
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() != "bearer" or not token_matches(credentials, self.token):
                await _refuse(401, TOKEN_REFUSAL, TOKEN_CHALLENGE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


class NoByteOrderMark:
    """ASGI middleware refusing with 400 a JSON body that starts with a byte order mark.

    JSON sent over a network must not start with one (RFC 8259, section 8.1);
    Python's parser would drop it silently, so a client that adds it would
    never learn it sends something other servers refuse.
    """

    BOM = b"\xef\xbb\xbf"

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip().lower()
        if scope["type"] != "http" or not (
            content_type in (b"", b"application/json") or content_type.endswith(b"+json")
        ):
            await self.app(scope, receive, send)
            return
        start = b""

        async def checked_receive() -> Message:
            nonlocal start
            message = await receive()
            if message["type"] == "http.request" and len(start) < len(self.BOM):
                start += message.get("body", b"")[: len(self.BOM) - len(start)]
                if start == self.BOM:
                    # FastAPI re-raises HTTPExceptions met while reading a body, so this becomes the 400.
                    raise HTTPException(400, "the JSON body starts with a byte order mark (U+FEFF): send it without")
            return message

        await self.app(scope, checked_receive, send)


class HostGuard:
    """ASGI middleware refusing with 400 a request whose Host header names none of ``allowed_hosts``.

    A page on another site that points a DNS name it controls at this
    machine (DNS rebinding) still sends that name as the Host. The whole
    value is read (:func:`host_name`): ``[::1].evil.com`` or
    ``127.0.0.1:80@evil.com`` name no allowed host, whatever they start with.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed = frozenset(allowed_host(name) for name in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
            header = given[0] if len(given) == 1 else ", ".join(given)  # two Host headers name no one host
            if len(given) != 1 or host_name(header) not in self.allowed:
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
