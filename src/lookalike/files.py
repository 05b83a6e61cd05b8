"""Atomic writes: whoever reads a file lookalike wrote sees the old file or the new one, never half of one.

Every file lookalike writes for a user (models, tables, reports, exports,
cached networks) goes through :func:`atomic_path`: the data is written beside
the target, flushed to disk, renamed over the target, and the directory
flushed too, so that a crash or a full disk at any moment leaves the old file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "commit_file",
    "fsync_dir",
    "replace_dir",
    "staging_dir",
    "write_bytes_atomic",
    "write_text_atomic",
]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename is durable only once its directory is)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def commit_file(temp: Path, path: Path) -> Path:
    """Flush ``temp`` to disk and rename it over ``path`` (for writers that stream to a temporary file themselves)."""
    _fsync_file(temp)
    os.replace(temp, path)
    fsync_dir(path.parent)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for any writer; on success it replaces ``path``, on error it is removed.

    The temporary name is unique per process and thread; it is created by the
    writer itself (not ``mkstemp``), so the file gets the usual permissions.

    Examples
    --------
    >>> with atomic_path("table.parquet") as temp:  # doctest: +SKIP
    ...     frame.to_parquet(temp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        yield temp
        commit_file(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)


@contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside ``target`` to build a directory in; removed unless :func:`replace_dir` moved it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.saving-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, target: str | os.PathLike) -> Path:
    """Flush every file in ``staging`` and move it to ``target``, replacing what was there.

    A folder cannot replace another in one rename: an existing ``target`` is
    moved aside first, then removed.
    """
    target = Path(target)
    for item in staging.rglob("*"):
        if item.is_file():
            _fsync_file(item)
    fsync_dir(staging)
    if target.exists():
        retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, retired / "old")
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)
    return target
