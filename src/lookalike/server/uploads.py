"""Checking an uploaded image before anything decodes its pixels.

The bytes decide what the upload is (the client's Content-Type and file
name are not trusted), and the header's pixel count is checked against a
cap before any decoding, so a small file cannot expand into gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.errors import LookalikeError
from lookalike.ingest.decode import ImageError, ImageInfo, probe

#: Decoded formats accepted from uploads: Pillow's still-image formats a browser or camera produces.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "HEIF", "AVIF"})


@dataclass(frozen=True)
class UploadLimits:
    """The caps of a server on uploads: bytes of the file, width x height of the image."""

    max_bytes: int
    max_pixels: int


class UploadError(LookalikeError, ValueError):
    """An upload refused before decoding; ``status`` is the HTTP status that says why."""

    kind = "bad upload"

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_upload(data: bytes, max_bytes: int, max_pixels: int) -> ImageInfo:
    """What the upload's header says it is, or an :class:`UploadError` (413, 415 or 422).

    Parameters
    ----------
    data : bytes
        The uploaded file.
    max_bytes : int
        Largest accepted upload.
    max_pixels : int
        Largest accepted width x height (the decompression-bomb guard).

    Examples
    --------
    >>> check_upload(b"hello", 1000, 10**6)
    Traceback (most recent call last):
    ...
    lookalike.server.uploads.UploadError: not an image (text)
    """
    if len(data) == 0:
        raise UploadError(422, "the uploaded file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise UploadError(413, f"upload too large: {len(data):,} bytes, the limit is {max_bytes:,}")
    try:
        info = probe(data)
    except ImageError as exc:
        status = 413 if "decompression-bomb" in exc.reason else 415
        raise UploadError(status, exc.reason) from None
    if info.width * info.height > max_pixels:
        raise UploadError(
            413,
            f"image too large: {info.width}x{info.height} = {info.width * info.height:,} pixels, "
            f"the limit is {max_pixels:,} (a decompression-bomb guard)",
        )
    if info.format not in ACCEPTED_FORMATS:
        raise UploadError(415, f"unsupported image format {info.format or 'unknown'!r}")
    return info
