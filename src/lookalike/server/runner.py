"""Running the explorer: in the foreground (``lookalike serve``) or in a background thread (``model.explore()``)."""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import CannotListen, InvalidArgument, MissingExtra
from lookalike.server.security import check_bind, is_loopback, loopback_hosts

#: How long a background server may take to start before :func:`start_in_thread` gives up.
START_TIMEOUT = 30.0
#: Seconds an idle keep-alive connection stays open. Longer than clients keep theirs (httpx 5 s, aiohttp 15 s,
#: proxies 60 s), so the client closes first: at uvicorn's 5 s a client reusing a connection just as the
#: server closed it got a ReadError (1 in ~2,700 requests under load).
KEEP_ALIVE = 65


def _uvicorn():
    try:
        import uvicorn
    except ImportError:
        raise MissingExtra("the web explorer needs the server extra: pip install 'lookalike[server]'") from None
    return uvicorn


def build_app(similarity_model: Any, host: str, token: str | None, **options: Any):
    """``create_app`` after the bind and CORS checks, answering only loopback Host headers when bound to loopback."""
    check_bind(host, token, options.get("cors"))
    _uvicorn()
    from lookalike.server.app import create_app

    if is_loopback(host):
        # A page on another site cannot reach us through a DNS name it controls (DNS rebinding).
        options.setdefault("allowed_hosts", loopback_hosts(host))
    return create_app(similarity_model, token=token, **options)


def _server(app: Any, log_level: str, **options: Any):
    """The uvicorn server of ``app``, with the settings every lookalike server shares."""
    uvicorn = _uvicorn()
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_keep_alive=KEEP_ALIVE, **options))


def _bind(host: str, port: int) -> socket.socket:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgument(f"port must be an integer from 0 to 65535 (0 picks a free one), got {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on connections whose socket says TCP,
    # and without it Nagle's algorithm and delayed ACKs add ~40 ms to every request on a reused connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock


def page_url(host: str, port: int, token: str | None = None, view: str | None = None) -> str:
    """The explorer's address (opening ``view``); a token travels in the fragment, which browsers never send.

    Examples
    --------
    >>> page_url("127.0.0.1", 8000)
    'http://127.0.0.1:8000/'
    >>> page_url("::1", 8000, token="s3cret", view="duplicates")
    'http://[::1]:8000/#token=s3cret&view=duplicates'
    """
    name = f"[{host.strip('[]')}]" if ":" in host else host
    fragment = "&".join(f"{key}={value}" for key, value in (("token", token), ("view", view)) if value)
    return f"http://{name}:{port}/" + (f"#{fragment}" if fragment else "")


@dataclass
class RunningServer:
    """A server running in a background thread. ``stop()`` shuts it down (also on leaving a ``with`` block)."""

    url: str
    host: str
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def api(self) -> str:
        """Base address of the REST API."""
        return self.url.split("#", 1)[0] + "api"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    similarity_model: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    open_browser: bool = False,
    **options: Any,
) -> RunningServer:
    """Serve the explorer from a daemon thread of this process; port 0 picks a free port.

    Returns once the server accepts connections.

    Examples
    --------
    >>> running = start_in_thread(model)  # doctest: +SKIP
    >>> running.url                       # doctest: +SKIP
    'http://127.0.0.1:40123/'
    >>> running.stop()                    # doctest: +SKIP
    """
    app = build_app(similarity_model, host, token, **options)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    server = _server(app, "warning", lifespan="off")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lookalike-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the explorer did not start on {host}:{port}")
        time.sleep(0.01)
    running = RunningServer(page_url(host, port, token), host, port, server, thread)
    if open_browser:
        webbrowser.open(running.url)
    return running


def serve(
    similarity_model: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    open_browser: bool = False,
    log_level: str = "info",
    view: str | None = None,
    **options: Any,
) -> None:
    """Serve the explorer in the foreground until interrupted (what ``lookalike serve`` runs); ``view`` is the
    page's view to open first (``"duplicates"`` for a review)."""
    app = build_app(similarity_model, host, token, **options)
    sock = _bind(host, port)
    url = page_url(host, sock.getsockname()[1], token, view)
    print(
        f"lookalike explorer on {url} (API spec: {url.split('#', 1)[0]}api/openapi.json); Ctrl+C stops it", flush=True
    )
    if open_browser:
        webbrowser.open(url)
    _server(app, log_level).run(sockets=[sock])
