"""Thumbnails of reference images, made once and kept on disk.

A thumbnail is keyed by the source file's absolute path, size and
modification time (and the thumbnail size), so an edited photo gets a new
one and several models of the same photos share them.

Whoever can write the cache folder must not be able to make the server send
other files, nor a damaged thumbnail: a cached file is opened without
following a symbolic link (the file or its sub-folder), only if it is a
regular file, and it must end with the SHA-256 of its key and the JPEG before it and
decode to a JPEG no larger than the thumbnail size. Anything else (a link, a
truncated, emptied or overwritten file) is made again from the original. The
bytes served are those checked, never the file opened again by name. A cache
that cannot be written (a file in place of its folder, a full disk) does not
stop thumbnails: they are made for each request instead, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException, Response
from PIL import Image

from lookalike.errors import ImageError
from lookalike.ingest import load_rgb
from lookalike.store import open_regular

#: Ends every cached thumbnail, before the SHA-256 of its key and the JPEG it follows (decoders stop at the JPEG's end).
TRAILER = b"lookalike-thumbnail-sha256:"
#: Browsers keep a thumbnail whose address names its file's version for a year without asking again.
IMMUTABLE = "private, max-age=31536000, immutable"
#: A cached file larger than this is not a thumbnail lookalike wrote (a 1024-px JPEG at quality 95 is ~0.5 MB).
MAX_CACHED_BYTES = 8 * 1024 * 1024


class ThumbnailCache:
    """Upright JPEG thumbnails of image files, cached in ``folder``.

    Parameters
    ----------
    folder : path
        Where thumbnails are kept (created on first use).
    size : int, default 256
        Longest side of a thumbnail, in pixels.
    quality : int, default 85
        JPEG quality.

    Examples
    --------
    >>> cache = ThumbnailCache("/tmp/thumbs", size=128)  # doctest: +SKIP
    >>> cache.get("samples/clothing/hat/0a1b.jpg")[:3]   # doctest: +SKIP
    b'\\xff\\xd8\\xff'
    """

    def __init__(self, folder: str | os.PathLike, size: int = 256, quality: int = 85):
        if size < 16:
            raise ValueError(f"thumbnail size must be at least 16 pixels, got {size}")
        self.folder = Path(folder)
        self.size = int(size)
        self.quality = int(quality)
        self.unwritable: str | None = None  # why the last write failed (warned once), None while writes succeed

    def _key(self, path: Path) -> str:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ImageError(str(path), "file not found") from None
        except PermissionError:
            raise ImageError(str(path), "permission denied") from None
        identity = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.size}\0{self.quality}"
        return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()

    def get(self, source: str | os.PathLike) -> bytes:
        """The JPEG thumbnail of the image at ``source``: from the cache when a whole one is there, else made now.

        Raises
        ------
        ImageError
            The image is missing, unreadable or not an image.
        """
        path = Path(source)
        key = self._key(path)
        cached = self._read(key)
        if cached is not None:
            return cached
        # load_rgb applies the EXIF orientation and the decompression-bomb limit.
        image = load_rgb(path, min_size=(self.size, self.size))
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=self.quality, optimize=True)
        jpeg = buffer.getvalue()
        self._write(key, jpeg)
        return jpeg

    @contextmanager
    def _sub_folder(self, key: str) -> Iterator[int]:
        """The open sub-folder of thumbnail ``key``; a link in its place is refused (``ELOOP``), never followed."""
        top = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sub = os.open(key[:2], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
        finally:
            os.close(top)
        try:
            yield sub
        finally:
            os.close(sub)

    def _read(self, key: str) -> bytes | None:
        """The cached thumbnail ``key`` if a regular file holds a whole one (not through a link), else None."""
        try:
            with self._sub_folder(key) as sub, open_regular(f"{key}.jpg", follow_symlinks=False, dir_fd=sub) as f:
                data = f.read(MAX_CACHED_BYTES + 1)
        except OSError:  # missing, a link, a FIFO, a folder, unreadable: made again
            return None
        return self._checked(key, data)

    def _checked(self, key: str, data: bytes) -> bytes | None:
        """The JPEG in a cached file's ``data`` if its digest matches and it is a thumbnail of this size, else None."""
        jpeg, marker, digest = data.rpartition(TRAILER)
        if not marker or len(data) > MAX_CACHED_BYTES or digest != _digest(key, jpeg):
            return None
        try:
            with Image.open(io.BytesIO(jpeg)) as image:
                fits = image.format == "JPEG" and 0 < max(image.size) <= self.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None
        return jpeg if fits else None

    def response(self, source: str | os.PathLike, version: str | None = None) -> Response:
        """The thumbnail of ``source`` as an HTTP response (see :meth:`get`).

        An address holding the file's :func:`file_version` can only ever show that file's image, so browsers keep
        it for good; 409 when the file is not that version any more (a stale page). An address without one may show
        another file tomorrow (positions change with an apply or undo, and a server restarted on the same port serves
        other files), so browsers must ask again each time.
        """
        jpeg = self.get(source)
        if version is None:
            return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-cache"})
        # Checked after the thumbnail is made: a file replaced meanwhile is refused, never kept under the old version.
        if version != file_version(source):
            raise HTTPException(409, "this image is another file now, or its file changed: reload the page")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})

    def _write(self, key: str, jpeg: bytes) -> None:
        """Keep ``jpeg`` as the thumbnail ``key`` (atomically, in a fresh file); warn once if the cache cannot be written."""
        # A fresh name opened with O_EXCL | O_NOFOLLOW in a sub-folder opened without following a link: nothing planted
        # in the cache (a link at the temporary name or in place of the sub-folder) is ever written through.
        name = f".{key}.{os.getpid()}.{threading.get_ident()}.{os.urandom(4).hex()}.partial"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            (self.folder / key[:2]).mkdir(parents=True, exist_ok=True)
            with self._sub_folder(key) as sub:
                try:
                    with open(os.open(name, flags, 0o644, dir_fd=sub), "wb") as f:
                        f.write(jpeg + TRAILER + _digest(key, jpeg))
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(name, f"{key}.jpg", src_dir_fd=sub, dst_dir_fd=sub)  # readers see all of it or none
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=sub)
                    raise
                os.fsync(sub)
        except OSError as exc:
            if self.unwritable is None:
                warnings.warn(
                    f"thumbnails cannot be kept in {self.folder} ({exc.strerror or exc}): "
                    "they are made for each request meanwhile",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self.unwritable = str(exc)
        else:
            self.unwritable = None


def file_version(path: str | os.PathLike) -> str | None:
    """A short key of the file at ``path`` as it is now (its absolute path, inode, size and modification time), for
    thumbnail addresses: another file, or this one edited, gets another key. None when there is no such file."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    identity = f"{os.path.abspath(path)}\0{stat.st_dev}\0{stat.st_ino}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _digest(key: str, jpeg: bytes) -> bytes:
    """What ends the cached thumbnail ``key``: bound to the key, so another thumbnail's file copied over it fails too."""
    return hashlib.sha256(key.encode() + b"\0" + jpeg).hexdigest().encode()
