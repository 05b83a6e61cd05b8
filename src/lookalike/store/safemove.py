"""Moving one of a user's files without ever losing its bytes: the one move every file action of lookalike uses.

:func:`move_file` never follows a symbolic link, at the source or at the
destination, never overwrites anything, and never removes the source before
the destination holds a verified copy of it:

- **one file system**: ``link(2)`` the source to the destination (which fails
  if anything, a link included, is there), flush the folder, then unlink the
  source: for an instant both names hold the same file, never neither;
- **across file systems**: copy into a recognisable temporary name in the
  destination's folder (``.NAME.lookalike-partial-PID``, see
  :func:`partial_copies`), hashing what is read, with the source's mode and
  times; flush it, read it back and check its size and SHA-256 against the
  source (and the digest the caller expects), put it in place without
  overwriting (a hard link, or ``renameat2(RENAME_NOREPLACE)`` where links are
  not supported), flush the folder, and only then unlink the source.

A kill at any moment leaves the file whole at the source, or at the
destination, or at both (the same bytes): :mod:`lookalike.dedup.moves` tells which
by content and finishes or undoes the move; a partial copy is always
recognisable by its name and removed. An error a user can cause (a full disk,
no permission, a read-only disk, a file-size limit) leaves the source as it was
and no partial copy, and is raised as :class:`~lookalike.errors.DiskFull` or
:class:`~lookalike.errors.FileMoveError` naming the path and the cause.

Works on Linux and other systems with ``openat``-style calls (``dir_fd``); on
Windows moving files is refused with a clear error.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from lookalike.errors import DiskFull, FileMoveError, MoveRefused

__all__ = ["KILL_AT", "cause_of", "file_digest", "kill_point", "move_file", "partial_copies", "remove_partial"]

#: Test-only: ``LOOKALIKE_TEST_KILL_AT=NAME`` (or ``NAME@N``, the Nth time) makes the process SIGKILL itself at
#: the point so named (:func:`kill_point`), so that tests can stop a move at a chosen moment for real.
KILL_AT = "LOOKALIKE_TEST_KILL_AT"
PARTIAL = ".lookalike-partial-"
CHUNK = 1 << 20
#: link(2) failing with these means "not here" (another file system, or one without hard links): copy instead.
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_NAME_MAX = 255
_reached: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process here when :data:`KILL_AT` names this point (tests only; nothing happens otherwise)."""
    wanted = os.environ.get(KILL_AT)
    if not wanted:
        return
    point, _, count = wanted.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _partial_name(name: str, pid: int | str) -> str:
    """The temporary name of a copy of ``name`` being made by process ``pid`` (hashed when ``name`` is long)."""
    temp = f".{name}{PARTIAL}{pid}"
    if len(os.fsencode(temp)) > _NAME_MAX:
        temp = f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}{PARTIAL}{pid}"
    return temp


def partial_copies(destination: str | os.PathLike) -> list[Path]:
    """The partial copies towards ``destination`` that interrupted moves (of any process) left in its folder."""
    destination = Path(destination)
    pattern = re.compile(re.escape(_partial_name(destination.name, "")) + r"(\d+)\Z")
    try:
        names = os.listdir(destination.parent)
    except OSError:
        return []
    return sorted(destination.parent / n for n in names if pattern.match(n))


def remove_partial(path: str | os.PathLike) -> bool:
    """Remove a partial copy unless the process that makes it is alive (another mover at work); whether removed."""
    pid = int(str(path).rsplit(PARTIAL, 1)[1])
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    folder = _open_folder(Path(path).parent)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return True


def file_digest(path: str | os.PathLike) -> str | None:
    """The SHA-256 of the regular file at ``path`` (hex), or None when it is absent, a link or not a regular file.

    The file is opened without following a link and without waiting on a FIFO.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextmanager
def _reported(source: Path, destination: Path) -> Iterator[None]:
    """Errors a user can cause, as one line naming the paths and the cause."""
    try:
        yield
    except (MoveRefused, FileMoveError, DiskFull):
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(destination.parent) from exc
        where = f"{source} to {destination}"
        raise FileMoveError(where, f"{cause_of(exc)}; the file is left where it was", exc.errno) from exc


def cause_of(error: OSError) -> str:
    """What a user-caused ``OSError`` means, in a few words."""
    causes = {
        errno.EFBIG: "the file is larger than the file-size limit (ulimit -f) or what the file system holds",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
    }
    return causes.get(error.errno, error.strerror or str(error))


def _open_folder(path: Path) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _open_below(root: Path, folder: Path) -> int:
    """``folder`` (created if missing) opened through ``root`` without following a link below ``root``."""
    fd = _open_folder(root)
    try:
        for part in folder.relative_to(root).parts:
            with suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                inner = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0), dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise MoveRefused(
                        f"{root / part} is not a folder (a link or a file): nothing is moved through it"
                    ) from None
                raise
            os.close(fd)
            fd, root = inner, root / part
    except BaseException:
        os.close(fd)
        raise
    return fd


def move_file(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    sha256: str | None = None,
    *,
    root: str | os.PathLike | None = None,
) -> None:
    """Move the regular file ``source`` to ``destination`` (which must not exist) so that its bytes are never lost.

    Parameters
    ----------
    source : path
        A regular file; a symbolic link, a folder or a FIFO is refused (never followed).
    destination : path
        Where it goes; its missing folders are made.
    sha256 : str, optional
        The digest the file must have (the one recorded when it was decided on); a copy is checked against it.
    root : path, optional
        A folder above ``destination`` that is trusted as it is: every folder between it and ``destination`` is
        made or opened without following a link. Default: ``destination``'s folder (made if missing).

    Raises
    ------
    lookalike.errors.MoveRefused
        This file is not moved (a link at the source, something already at the destination, changed content);
        nothing was changed.
    lookalike.errors.DiskFull
        The destination's disk is full; the source is whole where it was, no partial copy is left.
    lookalike.errors.FileMoveError
        Another error a user can cause (permissions, a read-only disk, a file-size limit), naming the path.
    """
    if os.name != "posix":
        raise FileMoveError(source, "lookalike moves files on Linux and macOS only")
    source, destination = Path(source), Path(destination)
    with _reported(source, destination):
        if root is None:
            destination.parent.mkdir(parents=True, exist_ok=True)
            root = destination.parent
        src_dir = _open_folder(source.parent)
        try:
            dst_dir = _open_below(Path(root), destination.parent)
            try:
                _move(src_dir, source, dst_dir, destination, sha256)
            finally:
                os.close(dst_dir)
        finally:
            os.close(src_dir)


def _checked_source(src_dir: int, source: Path) -> os.stat_result:
    try:
        found = os.lstat(source.name, dir_fd=src_dir)
    except FileNotFoundError:
        raise MoveRefused(f"{source} no longer exists") from None
    if stat.S_ISLNK(found.st_mode):
        raise MoveRefused(f"{source} is a symbolic link: lookalike moves only regular files, never through a link")
    if not stat.S_ISREG(found.st_mode):
        raise MoveRefused(f"{source} is not a regular file: lookalike moves only regular files")
    return found


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _unlink_source(src_dir: int, source: Path, expected: os.stat_result) -> None:
    """Unlink the source once its bytes are safe elsewhere, if it is still the file that was moved."""
    now = os.lstat(source.name, dir_fd=src_dir)
    if not _same(now, expected) or (now.st_size, now.st_mtime_ns) != (expected.st_size, expected.st_mtime_ns):
        raise MoveRefused(f"{source} changed while it was moved")
    # Not flushed: an unlink lost in a power cut leaves the file at both places, which an apply's resume or undo
    # tells by content; what must be on the disk before it is the destination's name (flushed by the caller).
    os.unlink(source.name, dir_fd=src_dir)


def _move(src_dir: int, source: Path, dst_dir: int, destination: Path, sha256: str | None) -> None:
    found = _checked_source(src_dir, source)
    try:
        os.link(source.name, destination.name, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
    except FileExistsError:
        raise MoveRefused(f"{destination} already exists") from None
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        _copy_across(src_dir, source, found, dst_dir, destination, sha256)
        return
    linked = os.lstat(destination.name, dir_fd=dst_dir)
    if not _same(linked, found):  # the source was replaced between the check and the link
        os.unlink(destination.name, dir_fd=dst_dir)
        raise MoveRefused(f"{source} changed while it was moved")
    os.fsync(dst_dir)
    kill_point("after-link")
    _finish(src_dir, source, found, dst_dir, destination)


def _finish(src_dir: int, source: Path, found: os.stat_result, dst_dir: int, destination: Path) -> None:
    """Unlink the source; if that fails, take back the destination (the source still holds the bytes)."""
    try:
        _unlink_source(src_dir, source, found)
    except BaseException:
        os.unlink(destination.name, dir_fd=dst_dir)
        os.fsync(dst_dir)
        raise


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_across(
    src_dir: int, source: Path, found: os.stat_result, dst_dir: int, destination: Path, sha256: str | None
) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    fd_in = os.open(source.name, flags, dir_fd=src_dir)
    try:
        opened = os.fstat(fd_in)
        if not _same(opened, found) or not stat.S_ISREG(opened.st_mode):
            raise MoveRefused(f"{source} changed while it was moved")
        temp = _partial_name(destination.name, os.getpid())
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dst_dir)  # a copy this same process id left, killed long ago
        fd_out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_dir)
        try:
            try:
                digest = _copy(fd_in, fd_out, opened)
            finally:
                os.close(fd_out)
            copied = _digest_at(dst_dir, temp)
            if copied != digest or os.lstat(temp, dir_fd=dst_dir).st_size != opened.st_size:
                raise FileMoveError(source, f"its copy at {destination.parent / temp} does not read back the same")
            if sha256 is not None and digest != sha256:
                raise MoveRefused(f"{source} changed since it was decided on (its SHA-256 differs)")
            kill_point("after-copy")
            _place(dst_dir, temp, destination)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dst_dir)
            raise
    finally:
        os.close(fd_in)
    kill_point("after-place")
    _finish(src_dir, source, found, dst_dir, destination)


def _copy(fd_in: int, fd_out: int, opened: os.stat_result) -> str:
    """Copy every byte, hashing what is read; flush the copy with the source's mode and times. The SHA-256."""
    digest = hashlib.sha256()
    first = True
    while chunk := os.read(fd_in, CHUNK):
        digest.update(chunk)
        if first and os.environ.get(KILL_AT):
            _write_all(fd_out, chunk[: len(chunk) // 2])
            os.fsync(fd_out)
            kill_point("mid-copy")
            chunk = chunk[len(chunk) // 2 :]
        first = False
        _write_all(fd_out, chunk)
    os.fchmod(fd_out, stat.S_IMODE(opened.st_mode))
    os.utime(fd_out, ns=(opened.st_atime_ns, opened.st_mtime_ns))
    os.fsync(fd_out)
    return digest.hexdigest()


def _digest_at(folder: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _place(dst_dir: int, temp: str, destination: Path) -> None:
    """Give the verified copy its name, never replacing anything there (a link included), then flush the folder."""
    try:
        os.link(temp, destination.name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
    except FileExistsError:
        raise MoveRefused(f"{destination} already exists") from None
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        _rename_no_replace(dst_dir, temp, destination)
    else:
        os.unlink(temp, dir_fd=dst_dir)
    os.fsync(dst_dir)


def _rename_no_replace(dst_dir: int, temp: str, destination: Path) -> None:
    """``renameat2(RENAME_NOREPLACE)`` for file systems without hard links (FAT, exFAT, some network ones)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        renameat2 = None
    if renameat2 is not None:
        if renameat2(dst_dir, os.fsencode(temp), dst_dir, os.fsencode(destination.name), 1) == 0:  # RENAME_NOREPLACE
            return
        error = ctypes.get_errno()
        if error == errno.EEXIST:
            raise MoveRefused(f"{destination} already exists")
        if error not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(error, os.strerror(error), str(destination))
    # No way to refuse an existing name in the rename itself here: check just before (the apply holds its lock).
    if _exists_at(dst_dir, destination):
        raise MoveRefused(f"{destination} already exists")
    os.rename(temp, destination.name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)


def _exists_at(folder: int, destination: Path) -> bool:
    try:
        os.lstat(destination.name, dir_fd=folder)
        return True
    except FileNotFoundError:
        return False
