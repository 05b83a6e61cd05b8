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
