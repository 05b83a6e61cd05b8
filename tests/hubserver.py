"""A loopback stand-in for the Hugging Face Hub's file endpoint, for the zoo tests.

It answers what ``huggingface_hub.hf_hub_download`` asks, the way the Hub
does: ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with ``X-Repo-Commit``,
an ``ETag`` (the SHA-256 for LFS-size files, the git blob SHA-1 for small
ones, as the Hub), ``Content-Length``; unknown files get 404 with
``X-Error-Code: EntryNotFound``. ``corrupt`` names files whose served bytes are
damaged (same length, same advertised hash): a download altered in transit.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_etag(data: bytes, lfs: bool) -> str:
    if lfs:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """``files[(repo, path)] = bytes``; ``url`` is the endpoint; ``requests`` logs (method, path)."""

    def __init__(self):
        self.files: dict[tuple[str, str], bytes] = {}
        self.lfs: set[tuple[str, str]] = set()
        self.corrupt: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                parts = unquote(self.path.split("?")[0]).lstrip("/").split("/")
                # /{owner}/{name}/resolve/{revision}/{path...}
                if len(parts) < 5 or parts[2] != "resolve":
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.end_headers()
                    return
                repo, revision, path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                data = hub.files.get((repo, path))
                if data is None or revision != COMMIT:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound" if data is None else "RevisionNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = hub_etag(data, (repo, path) in hub.lfs)
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                if (repo, path) in hub.lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    if (repo, path) in hub.corrupt:
                        data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                    self.wfile.write(data)

            def do_HEAD(self):  # noqa: N802
                self._answer(body=False)

            def do_GET(self):  # noqa: N802
                self._answer(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo: str, path: str, data: bytes, lfs: bool = True) -> str:
        """Serve ``data``; returns its SHA-256."""
        self.files[(repo, path)] = data
        if lfs:
            self.lfs.add((repo, path))
        return hashlib.sha256(data).hexdigest()

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket: from now on connections are refused."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def tiny_image_net(seed: int = 0, size: int = 32, channels: int = 16, classes: int = 10) -> bytes:
    """A small real CNN (fixed random weights): ``pixel_values`` -> conv, relu, pool -> Gemm ``logits``.

    Its pooled ``channels``-d features are the embedding a ``tap="classifier_input"`` entry takes.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (channels, 3, 3, 3)).astype(np.float32), "conv/w"),
        numpy_helper.from_array(rng.normal(0, 0.1, channels).astype(np.float32), "conv/b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (classes, channels)).astype(np.float32), "fc/w"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "fc/b"),
    ]
    nodes = [
        helper.make_node("Conv", ["pixel_values", "conv/w", "conv/b"], ["conv"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc/w", "fc/b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
