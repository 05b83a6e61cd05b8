"""Atomic writes (whoever reads a file lookalike wrote sees the old file or the new one, never half), file digests,
and scratch arrays larger than memory.

Every file lookalike writes for a user (models, tables, reports, exports,
cached networks) goes through :func:`atomic_path`: the data is written beside
the target, flushed to disk, renamed over the target, and the directory
flushed too, so that a crash or a full disk at any moment leaves the old file.
A write that runs out of space raises :class:`~lookalike.errors.DiskFull`,
naming the folder, instead of the writer's own words for it.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lookalike.config import cache_dir
from lookalike.errors import DiskFull, FileTooLarge, MoveRefused, NotRegularFile
from lookalike.store.safemove import move_file

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, saves are not guarded against each other
    fcntl = None

__all__ = [
    "cached_sha256",
    "file_sha256",
    "atomic_path",
    "commit_file",
    "fsync_dir",
    "file_type",
    "fsync_tree",
    "locked",
    "move_without_overwrite",
    "open_regular",
    "relative_inside",
    "place_dir",
    "replace_dir",
    "reporting_full_disk",
    "set_aside",
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


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under ``folder`` and every folder's entries, so that renaming ``folder`` publishes it whole."""
    folders = [Path(folder)]
    for item in Path(folder).rglob("*"):
        if item.is_symlink():
            continue
        if item.is_dir():
            folders.append(item)
        elif item.is_file():
            _fsync_file(item)
    for each in reversed(folders):  # deepest first: a folder's entry is flushed after what it holds
        fsync_dir(each)


def _is_full_disk(exc: BaseException) -> bool:
    """Whether ``exc`` reports a full disk: ``ENOSPC``/``EDQUOT``, or a C++ writer (faiss) quoting the system's words for it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, RuntimeError) and os.strerror(errno.ENOSPC) in str(exc)


def _is_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` reports a write past the largest file allowed (``EFBIG``), in a writer's words or the system's."""
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return True
    return isinstance(exc, RuntimeError) and os.strerror(errno.EFBIG) in str(exc)


@contextmanager
def reporting_full_disk(folder: str | os.PathLike, path: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn a write error caused by a full disk into :class:`DiskFull` naming ``folder``, and one caused by a file
    size limit (``EFBIG``: ``ulimit -f``) into :class:`~lookalike.errors.FileTooLarge` naming ``path`` (the file
    being written, by default ``folder``); other errors pass unchanged.

    Writers word it their own way ("327680 requested and 262112 written",
    "Error writing bytes to file"), which says nothing about where.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, DiskFull | FileTooLarge):
            raise
        if _is_full_disk(exc):
            raise DiskFull(folder) from exc
        if _is_too_large(exc):
            raise FileTooLarge(path or folder) from exc
        raise


def file_type(mode: int) -> str:
    """What a file whose ``st_mode`` is ``mode`` is, in a word or two: "regular file", "FIFO", "folder"...

    Examples
    --------
    >>> file_type(stat.S_IFIFO | 0o644), file_type(stat.S_IFDIR | 0o755)
    ('FIFO', 'folder')
    """
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _is_link(path: str | os.PathLike, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def open_regular(path: str | os.PathLike, follow_symlinks: bool = True, dir_fd: int | None = None) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; never waits on a FIFO, never follows a link if told not to.

    ``dir_fd``: ``path`` is relative to this open folder (see :func:`os.open`).

    Raises
    ------
    lookalike.errors.NotRegularFile
        ``path`` is a FIFO (opened without waiting for a writer), a device, a folder or, with
        ``follow_symlinks=False``, a symbolic link.
    OSError
        ``path`` cannot be opened (missing, permission denied, a loop of links).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        # O_NOFOLLOW refuses a link with ELOOP, which would read as a loop of links: say what it is.
        if not follow_symlinks and exc.errno == errno.ELOOP and _is_link(path, dir_fd):
            raise NotRegularFile(path, "symbolic link") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(path, file_type(mode))
    file = open(fd, "rb")  # noqa: SIM115 - returned open, as open() would be
    if dir_fd is None:
        file.raw.name = os.fspath(path)  # as open(path) would: np.memmap and messages name the file, not the fd
    return file


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
        with reporting_full_disk(path.parent, path):
            yield temp
            commit_file(temp, path)
    except OSError as exc:
        about_temp = str(temp) in str(exc) if exc.filename is None else os.fspath(exc.filename) == os.fspath(temp)
        if not about_temp or exc.errno is None or type(exc).__module__ != "builtins":  # a LookalikeError says it all
            raise
        # The temporary name means nothing to a person (pyarrow, say, quotes it in its own words): name the file.
        raise type(exc)(exc.errno, os.strerror(exc.errno), os.fspath(path)) from exc
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


#: Folders this process holds locked, by (device, inode, thread): how deep the holds of each nest.
_HELD: dict[tuple[int, int, int], int] = {}


@contextmanager
def locked(folder: str | os.PathLike, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``folder`` while the block runs; yields whether it was obtained.

    The lock (``flock``) is advisory, only between lookalike processes, and
    the system drops it when its holder ends, even killed: a crash never
    leaves a folder locked. With ``wait=False`` a folder another process
    holds yields False at once. A thread that holds the lock may take it
    again (an apply holds the model's folder across the saves it makes);
    another thread of the same process waits for it like another process,
    and ``wait=False`` (is anyone using it?) is False for the holder too.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        found = os.fstat(fd)
        key = (found.st_dev, found.st_ino, threading.get_ident())
        if wait and key in _HELD:
            _HELD[key] += 1
            try:
                yield True
            finally:
                _HELD[key] -= 1
            return
        obtained = True
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                obtained = False
            except OSError:  # a file system without locks (some network ones): writers are not kept apart there
                pass
        outermost = obtained and key not in _HELD
        if outermost:
            _HELD[key] = 1
        try:
            yield obtained
        finally:
            if outermost:
                del _HELD[key]
    finally:
        os.close(fd)


@contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside ``target`` to build a directory in, locked while in use; removed unless moved away.

    The lock (see :func:`locked`) follows the folder when it is renamed, and
    tells a cleaner that a hidden ``.saving-`` folder is still being written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.saving-"))
    except OSError as exc:
        if exc.errno is None or type(exc).__module__ != "builtins":
            raise
        raise type(exc)(exc.errno, os.strerror(exc.errno), os.fspath(target)) from exc  # not the name it tried
    try:
        with locked(staging):
            yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def place_dir(staging: Path, target: str | os.PathLike) -> Path:
    """Flush ``staging`` and rename it to ``target`` in one step; ``target`` must be absent or an empty folder.

    Raises
    ------
    OSError
        ``target`` is a file or a folder that is not empty (``ENOTEMPTY``/``EEXIST``).
    """
    target = Path(target)
    fsync_tree(staging)
    os.rename(staging, target)
    fsync_dir(target.parent)
    return target


def replace_dir(staging: Path, target: str | os.PathLike) -> Path:
    """Flush every file in ``staging`` and move it to ``target``, replacing what was there.

    A folder cannot replace a non-empty one in one rename: such a ``target``
    is moved aside first, then removed, so for an instant nothing is at
    ``target``. Saved models avoid that instant (see :mod:`lookalike.store.storage`).
    """
    target = Path(target)
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return place_dir(staging, target)
    fsync_tree(staging)
    retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, retired / "old")
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
    fsync_dir(target.parent)
    return target


def set_aside(path: str | os.PathLike, why: str = "damaged") -> Path:
    """Rename ``path`` (a file, a link, a FIFO) to ``NAME.<why>-<date>-<time>`` beside it, never over another one.

    For a damaged file that someone may want to look at or repair: kept, out of the way.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in itertools.count():
        aside = path.with_name(f"{path.name}.{why}-{stamp}" + (f"-{attempt}" if attempt else ""))
        if not os.path.lexists(aside):
            os.rename(path, aside)
            return aside
    raise AssertionError("unreachable")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a regular file's content, read in blocks (hex); ``OSError`` when it cannot be read or is not a
    regular file (a FIFO is refused at once, never waited on)."""
    with open_regular(path) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: SHA-256 of files already read, by (path, size, modification time): dedup and decisions ask for the same files'
#: digests again and again (each regrouping of an explorer); a file is read again only when it changed.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: str | os.PathLike) -> str | None:
    """:func:`file_sha256` of ``path``, read once per version of the file (path, size, mtime); None when it cannot
    be read."""
    try:
        stat = os.stat(path)
        key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            _DIGESTS[key] = file_sha256(path)
        return _DIGESTS[key]
    except OSError:
        return None


def relative_inside(path: str, real_root: Path) -> Path | None:
    """``path`` relative to the (resolved) root, resolving its folders but not the file itself; None if outside."""
    folder = Path(os.path.realpath(os.path.dirname(os.path.abspath(path))))
    try:
        return folder.relative_to(real_root) / os.path.basename(path)
    except ValueError:
        return None


def move_without_overwrite(source: Path, destination: Path) -> str | None:
    """Move without ever overwriting or following a link (:func:`lookalike.store.safemove.move_file`); None on success,
    else why the file was left where it was."""
    try:
        move_file(source, destination)
    except MoveRefused as exc:
        return str(exc)
    return None


#: Arrays a run builds of at least this many bytes (the embeddings of a large collection, references grown by
#: ``add``) live in a scratch file instead of in memory (see :func:`scratch_array`).
SCRATCH_BYTES = 1 << 30


def scratch_array(shape: tuple[int, int], dtype: type = np.float32) -> np.ndarray:
    """A zeroed, writable array backed by a new file in ``cache_dir()/scratch`` that is unlinked at once.

    Its pages are the kernel's to write back and drop under memory pressure, like any file's, so a
    matrix larger than memory can be filled; nothing is left on disk once it is dropped. The file's
    space is reserved up front: a full disk is a :class:`DiskFull` now, not a crash on a later write.
    """
    folder = cache_dir() / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"array-{os.getpid()}-{threading.get_ident()}-{os.urandom(6).hex()}"
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        with reporting_full_disk(folder), open(path, "w+b") as f:
            if size == 0:
                return np.zeros(shape, dtype)
            os.posix_fallocate(f.fileno(), 0, size)
            return np.memmap(f, dtype=dtype, mode="r+", shape=shape)
    finally:
        path.unlink(missing_ok=True)
