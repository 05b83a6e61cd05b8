"""ONNX files in the user's cache: built once, verified every time they are used."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from lookalike.config import cache_dir
from lookalike.store.files import file_sha256, open_regular, write_bytes_atomic

#: Bytes of a sidecar read: it holds a version and a digest (about 100 bytes).
SIDECAR_LIMIT = 64 * 1024


def cached_build(name: str, version: int, build: Callable[[], bytes]) -> Path:
    """Return the cached ONNX file for ``name``, (re)building it when missing, stale or corrupt.

    A sidecar JSON records the builder version and the file's SHA-256; a file
    that does not match its sidecar, or that is not a regular file (a FIFO), is
    never trusted: it is built again and replaced.
    """
    folder = cache_dir() / "models"
    path = folder / f"{name}.onnx"
    sidecar = folder / f"{name}.json"
    try:
        # Both read only as regular files: a FIFO in their place is rebuilt over, never waited on.
        with open_regular(sidecar) as f:
            meta = json.loads(f.read(SIDECAR_LIMIT))
        if meta.get("builder_version") == version and meta.get("sha256") == file_sha256(path):
            return path
    except (OSError, ValueError, AttributeError):  # missing, unreadable, not JSON, not an object
        pass
    data = build()
    write_bytes_atomic(path, data)
    record = {"builder_version": version, "sha256": hashlib.sha256(data).hexdigest()}
    write_bytes_atomic(sidecar, json.dumps(record).encode())
    return path
