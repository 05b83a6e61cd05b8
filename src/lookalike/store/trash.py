"""The system trash on Linux and other freedesktop.org systems: where a file goes, and its ``.trashinfo``.

A trashed file is moved (by :func:`lookalike.store.safemove.move_file`, like every
move of a user's file) into ``TRASH/files/NAME``, with ``TRASH/info/NAME.trashinfo``
saying where it was and when, as the freedesktop.org trash specification 1.0
asks, so that a file manager lists it and can restore it. The trash is
``$XDG_DATA_HOME/Trash`` (``~/.local/share/Trash``) for a file on the same file
system, else ``TOPDIR/.Trash/$UID`` (a sticky ``.Trash`` the administrator
made) or ``TOPDIR/.Trash-$UID`` at the top of the file's own file system: a
file never crosses file systems to reach the trash.

Why not ``send2trash``: it returns nothing, so the undo manifest could not say
where the bytes went; it picks a name by checking whether one exists and then
writes the ``.trashinfo`` with a plain ``open(..., "w")`` and moves the file
with ``os.rename``, which replaces a file another process put there meanwhile;
and it reads ``$XDG_DATA_HOME`` once, when imported. Here the name is
reserved by creating the ``.trashinfo`` with ``O_EXCL`` first, and the move
never overwrites.

macOS and Windows have trashes of their own, reached through their APIs
(Finder, the shell's ``IFileOperation``), which lookalike does not call:
there, trashing is refused with a clear error (move the files to a folder instead).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from lookalike.errors import InvalidArgument, MoveRefused

__all__ = ["INFO_SUFFIX", "check_supported", "info_path_of", "original_path", "reserve", "trash_folder"]

INFO_SUFFIX = ".trashinfo"


def check_supported() -> None:
    """Raise :class:`InvalidArgument` where the freedesktop.org trash is not the system's (macOS, Windows)."""
    if sys.platform == "darwin" or os.name != "posix":
        raise InvalidArgument(
            f"moving files to the trash is not supported here ({sys.platform}): lookalike uses the freedesktop.org "
            "trash of Linux; move them to a folder instead (--move-to DIR)"
        )


def _home_trash() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(os.path.abspath(data)) / "Trash"


def _device_of(path: Path) -> int:
    """The device of ``path``, or of its nearest existing folder when it does not exist yet."""
    while True:
        try:
            return os.stat(path).st_dev
        except FileNotFoundError:
            if path.parent == path:
                raise
            path = path.parent


def _top_of(folder: Path) -> Path:
    """The top folder (mount point) of the file system holding ``folder``."""
    folder = Path(os.path.realpath(folder))
    device = os.stat(folder).st_dev
    while folder.parent != folder and os.stat(folder.parent).st_dev == device:
        folder = folder.parent
    return folder


def _private_folder(path: Path) -> Path:
    """``path`` as a folder of this user's (made 0700 if missing), refused if it is a link or someone else's."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise MoveRefused(f"{path} is not a folder of this user's (a link, a file or another user's): no trash there")
    return path


def trash_folder(path: str | os.PathLike) -> tuple[Path, Path]:
    """(the trash folder for the file at ``path``, the folder its ``.trashinfo`` paths are relative to or itself).

    The home trash takes files of its own file system (their ``Path`` is recorded absolute); a file elsewhere
    goes to its file system's top folder: ``.Trash/$UID`` when an administrator made a sticky ``.Trash``
    there (not a link), else ``.Trash-$UID``, made if missing (its ``Path`` is recorded relative to the top).
    """
    check_supported()
    path = Path(path)
    home = _home_trash()
    device = os.lstat(path).st_dev
    if _device_of(home) == device:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return home, Path("/")
    top = _top_of(path.parent)
    shared = top / ".Trash"
    try:
        found = os.lstat(shared)
        if stat.S_ISDIR(found.st_mode) and found.st_mode & stat.S_ISVTX:
            return _private_folder(shared / str(os.getuid())), top
    except (FileNotFoundError, MoveRefused):
        pass
    try:
        return _private_folder(top / f".Trash-{os.getuid()}"), top
    except PermissionError:
        raise MoveRefused(f"no trash can be made on the file system of {path} ({top} is not writable)") from None


def _info_text(path: Path, base: Path) -> str:
    recorded = os.fspath(path.relative_to(base)) if base != Path("/") else os.fspath(path)
    return (
        "[Trash Info]\n"
        f"Path={quote(os.fsencode(recorded), safe='/')}\n"
        f"DeletionDate={time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    )


def info_path_of(trashed: str | os.PathLike) -> Path:
    """The ``.trashinfo`` of the file at ``TRASH/files/NAME``: ``TRASH/info/NAME.trashinfo``."""
    trashed = Path(trashed)
    return trashed.parent.parent / "info" / f"{trashed.name}{INFO_SUFFIX}"


def reserve(path: str | os.PathLike) -> tuple[Path, Path]:
    """Reserve a name in the trash for the file at ``path``: its ``.trashinfo`` is written (created with
    ``O_EXCL``, so no other trasher can take the name), and ``(TRASH/files/NAME, TRASH/info/NAME.trashinfo)``
    returned. The file itself is not moved here."""
    path = Path(os.path.abspath(path))
    folder, base = trash_folder(path)
    files, info = _private_folder(folder / "files"), _private_folder(folder / "info")
    stem, suffix = os.path.splitext(path.name)
    text = _info_text(path, base).encode()
    for number in range(1, 10_000):
        name = path.name if number == 1 else f"{stem}.{number}{suffix}"
        try:
            fd = os.open(info / f"{name}{INFO_SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.lexists(files / name):  # a file trashed without its info: leave that name to it
            os.unlink(info / f"{name}{INFO_SUFFIX}")
            continue
        return files / name, info / f"{name}{INFO_SUFFIX}"
    raise MoveRefused(f"no free name in the trash {folder} for {path}")


def original_path(info: str | os.PathLike) -> str | None:
    """The path a ``.trashinfo`` says its file came from (absolute), or None if it cannot be read."""
    info = Path(info)
    try:
        lines = info.read_bytes().decode("utf-8", "surrogateescape").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Path="):
            recorded = os.fsdecode(unquote_to_bytes(line[5:]))
            if os.path.isabs(recorded):
                return recorded
            top = info.parent.parent.parent  # TOPDIR/.Trash-$UID/info or TOPDIR/.Trash/$UID/info
            if top.name == ".Trash":
                top = top.parent
            return os.path.join(top, recorded)
    return None
