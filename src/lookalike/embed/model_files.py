"""ONNX files in the user's cache: built once, verified every time they are used."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lookalike.config import cache_dir


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    atomic_write_bytes(path, data)
    record = {"builder_version": version, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(sidecar, json.dumps(record).encode())
    return path
