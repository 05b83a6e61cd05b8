"""A real HTTP server on 127.0.0.1 for download tests: good images and every way a download goes wrong.

Routes (``GET``):

==========================  ===========================================================
``/img/NAME``               the bytes registered as NAME (Content-Type: image/jpeg, whatever they are)
``/redirect/NAME``          302 to ``/img/NAME``
``/flaky/NAME``             HTTP 500 for the first ``flaky_failures`` requests, then NAME
``/cut/NAME``               the full Content-Length of NAME, half its bytes, then the connection closes
``/status/CODE``            an empty response with that status (404, 410, 503...)
``/drip``                   a 200 whose body arrives one byte a second (never completes in time)
``/drip-headers``           the status line and headers one byte a second
``/endless``                a 200 without Content-Length whose body never ends
``/huge-declared``          Content-Length of 10 GB, then nothing
``/loop``                   302 to itself, forever
``/to-file``                302 to ``file:///etc/passwd``
``/reset``                  closes the connection without answering
==========================  ===========================================================

Every request is counted by path (:attr:`ImageServer.hits`). Slow routes
stop as soon as the client hangs up, or when the server stops.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    server: _Server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, data: bytes) -> None:
        for byte in data:
            if self.server.stopping.wait(1.0):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up: what the test wants
                return

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path
        with owner.lock:
            owner.hits[path] += 1
            count = owner.hits[path]
        kind, _, name = path.lstrip("/").partition("/")
        if kind == "img" and name in owner.files:
            self._send(200, owner.files[name], {"Content-Type": "image/jpeg"})
        elif kind == "redirect":
            self._send(302, headers={"Location": f"/img/{name}"})
        elif kind == "flaky":
            if count <= owner.flaky_failures:
                self._send(500, b"try again")
            else:
                self._send(200, owner.files[name], {"Content-Type": "image/jpeg"})
        elif kind == "cut":
            data = owner.files[name]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        elif kind == "status":
            self._send(int(name))
        elif kind == "drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            self._drip(owner.files[next(iter(owner.files))][:60])
            self.close_connection = True
        elif kind == "drip-headers":
            self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Padding: " + b"x" * 60)
            self.close_connection = True
        elif kind == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"\xff" * 65536
            try:
                while not self.server.stopping.is_set():
                    self.wfile.write(chunk)
            except OSError:
                pass
            self.close_connection = True
        elif kind == "huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024**3))
            self.end_headers()
            self.close_connection = True
        elif kind == "loop":
            self._send(302, headers={"Location": "/loop"})
        elif kind == "to-file":
            self._send(302, headers={"Location": "file:///etc/passwd"})
        elif kind == "reset":
            self.close_connection = True  # no response at all
        else:
            self._send(404, b"not found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ImageServer
    stopping: threading.Event


class ImageServer:
    """Serve ``files`` (name -> bytes) and the failure routes on 127.0.0.1, in a background thread.

    >>> with ImageServer({"a.jpg": data}) as server:  # doctest: +SKIP
    ...     server.url("img/a.jpg")
    'http://127.0.0.1:40123/img/a.jpg'
    """

    def __init__(self, files: dict[str, bytes], flaky_failures: int = 1):
        self.files = files
        self.flaky_failures = flaky_failures
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, route: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{route.lstrip('/')}"

    def hits_under(self, prefix: str) -> int:
        """Requests received for paths starting with ``prefix``."""
        with self.lock:
            return sum(n for path, n in self.hits.items() if path.startswith(prefix))

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
