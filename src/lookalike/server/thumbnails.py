"""Thumbnails of reference images, made once and kept on disk.

A thumbnail is keyed by the source file's absolute path, size and
modification time (and the thumbnail size), so an edited photo gets a new
one and several models of the same photos share them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from lookalike.files import atomic_path
from lookalike.ingest.decode import ImageError, load_rgb


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
    >>> cache.get("samples/clothing/hat/0a1b.jpg")       # doctest: +SKIP
    PosixPath('/tmp/thumbs/3f/3f9c...jpg')
    """

    def __init__(self, folder: str | os.PathLike, size: int = 256, quality: int = 85):
        if size < 16:
            raise ValueError(f"thumbnail size must be at least 16 pixels, got {size}")
        self.folder = Path(folder)
        self.size = int(size)
        self.quality = int(quality)

    def _key(self, path: Path) -> str:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ImageError(str(path), "file not found") from None
        except PermissionError:
            raise ImageError(str(path), "permission denied") from None
        identity = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.size}\0{self.quality}"
        return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()

    def get(self, source: str | os.PathLike) -> Path:
        """The thumbnail file of the image at ``source``, made now if it is not cached yet.

        Raises
        ------
        ImageError
            The image is missing, unreadable or not an image.
        """
        path = Path(source)
        key = self._key(path)
        target = self.folder / key[:2] / f"{key}.jpg"
        if target.is_file():
            return target
        # load_rgb applies the EXIF orientation and the decompression-bomb limit.
        image = load_rgb(path, min_size=(self.size, self.size))
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        with atomic_path(target) as temporary:  # a concurrent reader sees the whole file or none
            image.save(temporary, "JPEG", quality=self.quality, optimize=True)
        return target
