"""ONNX files in the user's cache: built once, verified every time they are used."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from lookalike.config import cache_dir
from lookalike.files import file_sha256, write_bytes_atomic


def cached_build(name: str, version: int, build: Callable[[], bytes]) -> Path:
    """Return the cached ONNX file for ``name``, (re)building it when missing, stale or corrupt.

    A sidecar JSON records the builder version and the file's SHA-256; a file
    that does not match its sidecar is never trusted.
    """
    folder = cache_dir() / "models"
    path = folder / f"{name}.onnx"
    sidecar = folder / f"{name}.json"
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("builder_version") == version and meta.get("sha256") == file_sha256(path):
            return path
    except (OSError, ValueError):
        pass
    data = build()
    write_bytes_atomic(path, data)
    record = {"builder_version": version, "sha256": hashlib.sha256(data).hexdigest()}
    write_bytes_atomic(sidecar, json.dumps(record).encode())
    return path
