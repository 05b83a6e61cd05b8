"""Open any supported image robustly and turn it into 8-bit RGB.

Every failure becomes an :class:`ImageError` that names the image, says
why and gives the kind of failure (``"truncated"``, ``"not an image"``...),
so callers can skip and report it instead of crashing a whole batch.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import ImageError
from lookalike.store.files import file_type

#: Images with more pixels than this are refused as decompression bombs
#: (Pillow's own warning threshold, about 89 megapixels).
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS
ORIENTATION_TAG = 0x0112
#: How to get the optional format plugins, for messages about formats Pillow cannot read alone.
FORMATS_EXTRA = "pip install 'lookalike[formats]'"

_plugins_lock = threading.Lock()
_plugins_registered = False


@dataclass(frozen=True)
class ImageInfo:
    """What the file header says, read without decoding pixels."""

    width: int
    height: int
    format: str
    mode: str


def source_name(source: Any) -> str:
    """A short human name for an image source, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if source is None or (isinstance(source, float) and source != source):  # an empty cell of a table
        return "(empty)"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {source.shape}>"
    return f"<{type(source).__name__}>"


def register_plugins() -> None:
    """Teach Pillow the formats of the optional ``formats`` extra (HEIC/HEIF via pillow-heif), once.

    Called before the first image is opened rather than at import, so
    ``import lookalike`` stays fast; without the extra nothing happens and
    such files are reported as an unsupported format naming the extra.
    (AVIF is read by Pillow itself from 11.3 on, which the extra requires;
    WebP, TIFF and the rest by any Pillow.)
    """
    global _plugins_registered
    if _plugins_registered:
        return
    with _plugins_lock:
        if not _plugins_registered:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                pass
            else:
                register_heif_opener()
            _plugins_registered = True


#: ISO media (``ftyp``) brands of still-image formats that Pillow reads only with a plugin.
_HEIF_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}
#: Leading bytes of other formats lookalike does not decode.
_OTHER_SIGNATURES = (
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop PSD"),
)


def _unidentified(name: str, head: bytes) -> ImageError:
    """Why Pillow could not identify data starting with ``head``: a known unsupported format, text, or unknown."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            format_name = _HEIF_BRANDS[brand]
            needs = "pillow-heif" if format_name != "AVIF" else "a Pillow built with AVIF, 11.3 or later"
            reason = f"unsupported format ({format_name}: needs {needs}; {FORMATS_EXTRA} adds it)"
            return ImageError(name, reason, "unsupported format")
        reason = f"unsupported format (ISO media file of brand {brand.decode('latin-1')!r}, not a still image)"
        return ImageError(name, reason, "unsupported format")
    for signature, format_name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return ImageError(name, f"unsupported format ({format_name})", "unsupported format")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return ImageError(name, "not an image (an HTML page)", "not an image")
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return ImageError(name, "unsupported format (SVG: vector images are not supported)", "unsupported format")
    if head and b"\x00" not in head and _is_utf8(head):
        return ImageError(name, "not an image (text)", "not an image")
    return ImageError(name, "not an image, or a format Pillow cannot read", "not an image")


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the end of ``head``
    return True


def _read_head(fp: Any, size: int = 512) -> bytes:
    if isinstance(fp, io.BytesIO):
        return fp.getvalue()[:size]
    try:
        with open(fp, "rb") as file:
            return file.read(size)
    except OSError:
        return b""


def _open_file(source: Any) -> Image.Image:
    """``Image.open`` with every failure turned into an ImageError."""
    register_plugins()
    name = source_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(name, "empty data (0 bytes)", "empty")
        fp: Any = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        try:
            status = path.stat()
        except FileNotFoundError:
            raise ImageError(name, "file not found", "file not found") from None
        except PermissionError:
            raise ImageError(name, "permission denied", "permission denied") from None
        if stat.S_ISDIR(status.st_mode):
            raise ImageError(name, "is a directory, not an image", "is a directory")
        if not stat.S_ISREG(status.st_mode):  # opening a FIFO would wait for a writer forever
            raise ImageError(name, f"not a regular file (a {file_type(status.st_mode)})", "not a regular file")
        if status.st_size == 0:
            raise ImageError(name, "empty file (0 bytes)", "empty")
        fp = path
    try:
        with warnings.catch_warnings():
            # A file above Pillow's limit is refused, not decoded with a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except PermissionError:
        raise ImageError(name, "permission denied", "permission denied") from None
    except UnidentifiedImageError:
        raise _unidentified(name, _read_head(fp)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(name, "image dimensions exceed the decompression-bomb limit", "too large") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"unreadable image ({exc})", "unreadable image") from None
    _check_size(name, image)
    return image


def _check_size(name: str, image: Image.Image) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"invalid dimensions {width}x{height}", "invalid dimensions")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            name,
            f"{width}x{height} = {width * height:,} pixels exceeds the decompression-bomb "
            f"limit of {MAX_IMAGE_PIXELS:,} (lookalike.ingest.decode.MAX_IMAGE_PIXELS)",
            "too large",
        )


def probe(source: str | os.PathLike) -> ImageInfo:
    """Read an image file's header (size, format, mode) without decoding pixels."""
    with _open_file(source) as image:
        return ImageInfo(image.size[0], image.size[1], image.format or "", image.mode)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, scaling high bit depths and flattening alpha on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Pillow's convert() clips 16-bit values at 255: scale the range instead.
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            name, "an image array must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA)", "unsupported image type"
        )
    if np.iscomplexobj(array) or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ImageError(name, f"an image array must hold real numbers, not {array.dtype}", "unsupported image type")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        # Clipped to 0..255, NaN would become some colour: an answer about an image nobody has.
        raise ImageError(name, "the image array holds NaN or infinite values", "invalid pixels")
    if array.dtype == np.uint16:
        # 16-bit pixels span 0..65535: scale them, as to_rgb does for 16-bit files, instead of clipping at 255.
        array = (array.astype(np.float32) * (255.0 / 65535.0)).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(array))
    _check_size(name, image)
    return image


def load_rgb(source: Any, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``source`` (path, bytes, PIL image or HxWxC array) to an upright 8-bit RGB image.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        The image.
    min_size : (width, height), optional
        When given, a JPEG much larger than this is decoded at a reduced
        scale (DCT-domain, ``Image.draft``) that is still at least this big:
        several times faster for camera photos. Any image still at least
        twice as big is then shrunk by a whole factor (``Image.reduce``, a
        box filter), so the full-size pixels are freed at once.

    Raises
    ------
    ImageError
        When the image is missing, unreadable, truncated, not an image, or too large.
    """
    return decode_image(source, min_size)[0]


def decode_image(source: Any, min_size: tuple[int, int] | None = None) -> tuple[Image.Image, ImageInfo]:
    """:func:`load_rgb`, plus what the source's header said (full size, format, mode)."""
    name = source_name(source)
    if isinstance(source, Image.Image):
        _check_size(name, source)
        info = ImageInfo(source.size[0], source.size[1], source.format or "", source.mode)
        return to_rgb(_upright(source)), info
    if isinstance(source, np.ndarray):
        image = _from_array(source, name)
        return to_rgb(image), ImageInfo(image.size[0], image.size[1], "", image.mode)
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ImageError(
            name, "unsupported image type (expected a path, bytes, PIL image or array)", "unsupported image type"
        )
    image = _open_file(source)
    info = ImageInfo(image.size[0], image.size[1], image.format or "", image.mode)
    try:
        if min_size is not None and image.format == "JPEG":
            # EXIF rotation may swap width and height: ask for enough in both.
            side = max(min_size)
            image.draft("RGB", (side, side))
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF/WebP, multi-page TIFF: the first frame
        image.load()
        result = to_rgb(_upright(image))
        if min_size is not None:
            # Other formats decode only at full size (a 40 MP PNG is 120 MB of RGB): shrink before returning,
            # so the caller never holds, and the copy below never doubles, the full-size pixels.
            factor = min(result.size[0] // min_size[0], result.size[1] // min_size[1])
            if factor >= 2:
                result = result.reduce(factor)
        # ``finally`` closes ``image``, which would free the pixels of a result that is the same object.
        return (result.copy() if result is image else result), info
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(name, "image dimensions exceed the decompression-bomb limit", "too large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "truncated" in str(exc):  # Pillow says so only in its message
            raise ImageError(name, "truncated image data", "truncated") from None
        raise ImageError(name, f"cannot decode ({exc})", "cannot decode") from None
    finally:
        image.close()


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; skip the copy ``exif_transpose`` makes when there is none."""
    if image.getexif().get(ORIENTATION_TAG, 1) in (0, 1):
        return image
    return ImageOps.exif_transpose(image)
