"""Facts about a picture read off the pixels the indexer has already decoded: its copy fingerprints and plain
measures of exposure, sharpness and colour.

They cost a few small resizes per image (well under the network's time) and
are kept with the embedding (in the cache and the references), so finding
copies and auditing a collection never decode it again.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass, fields

import numpy as np
import pandas as pd
from PIL import Image, ImageStat

from lookalike.ingest.fingerprint import fingerprints, window_fingerprints

__all__ = [
    "COLUMNS",
    "FACTS_VERSION",
    "PixelFacts",
    "facts_from_bytes",
    "facts_table",
    "facts_to_bytes",
    "pixel_facts",
    "pixel_measures",
]

#: Changes whenever a fact is added or computed otherwise: cached facts of another version are read off the pixels
#: again (the embedding cached beside them is kept).
#: 2: fingerprints of the windows a reframing crop keeps. 3: of the picture a screenshot shows on its canvas.
FACTS_VERSION = 3
#: Longest side the measures are taken at (shrunk by a whole factor, so between this and twice it): a photo that
#: looks sharp at this size is sharp enough.
SHARPNESS_SIDE = 256
#: Longest side colourfulness is measured at (about).
COLOUR_SIDE = 64


@dataclass(frozen=True)
class PixelFacts:
    """What the pixels of one image say, besides what it shows.

    Attributes
    ----------
    fingerprint, fingerprint_trimmed, fingerprint_picture : int
        Copy fingerprints of the whole picture, of what lies inside its
        uniform borders and of the picture it shows on a plain canvas (a
        screenshot's photo; see :mod:`lookalike.ingest.fingerprint`), as signed
        64-bit integers (the bits of the unsigned fingerprint).
    fingerprint_centre, fingerprint_top_left, ... : int
        Fingerprints of the windows a reframing crop keeps
        (:data:`lookalike.ingest.fingerprint.WINDOWS`).
    brightness, contrast : float
        Mean and standard deviation of the grey levels, in [0, 1].
    sharpness : float
        Standard deviation of the grey levels' Laplacian at about
        :data:`SHARPNESS_SIDE` pixels, in grey levels: low for a blurred or flat picture.
    entropy : float
        Entropy of the grey-level histogram, in bits (0: one grey; 8: every level alike).
    colourfulness : float
        Mean difference between the strongest and the weakest colour channel, in
        [0, 1]: about 0 for a grey picture stored in colour.
    """

    fingerprint: int
    fingerprint_trimmed: int
    fingerprint_picture: int
    fingerprint_centre: int
    fingerprint_top_left: int
    fingerprint_top_right: int
    fingerprint_bottom_left: int
    fingerprint_bottom_right: int
    brightness: float
    contrast: float
    sharpness: float
    entropy: float
    colourfulness: float


COLUMNS = tuple(f.name for f in fields(PixelFacts))


def _signed(value: int) -> int:
    """The unsigned 64-bit ``value`` as the signed integer with the same bits (what int64 columns hold)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def pixel_facts(image: Image.Image) -> PixelFacts:
    """The facts of a decoded picture (any mode).

    Examples
    --------
    >>> from PIL import Image
    >>> facts = pixel_facts(Image.new("RGB", (64, 48), (128, 128, 128)))
    >>> facts.contrast, facts.entropy, facts.colourfulness
    (0.0, 0.0, 0.0)
    """
    small, gray = _reduced(image)
    whole, trimmed, shown = fingerprints(gray)
    windows = window_fingerprints(gray)
    fingerprinted = (whole, trimmed, shown, *windows)
    return PixelFacts(*(_signed(value) for value in fingerprinted), *_measured(small, gray).values())


def pixel_measures(image: Image.Image) -> dict[str, float]:
    """The measures of :func:`pixel_facts` alone (``brightness`` ... ``colourfulness``), without the fingerprints:
    what the image-quality findings read."""
    return _measured(*_reduced(image))


def _reduced(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The picture in colour and in grey, shrunk by a whole factor (a box filter, the cheapest resize) to about
    SHARPNESS_SIDE: one shrink serves every fact."""
    factor = max(1, max(image.size) // SHARPNESS_SIDE)
    small = (image.reduce(factor) if factor > 1 else image).convert("RGB")
    return small, small.convert("L")


def _measured(small: Image.Image, gray: Image.Image) -> dict[str, float]:
    stat = ImageStat.Stat(gray)
    levels = np.asarray(gray, dtype=np.int16)
    laplacian = levels[1:-1, :-2] + levels[1:-1, 2:] + levels[:-2, 1:-1] + levels[2:, 1:-1] - 4 * levels[1:-1, 1:-1]
    colours = small.reduce(max(1, max(small.size) // COLOUR_SIDE))
    red, green, blue = (np.asarray(band, dtype=np.int16) for band in colours.split())
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    return {
        "brightness": round(stat.mean[0] / 255.0, 4),
        "contrast": round(stat.stddev[0] / 255.0, 4),
        "sharpness": round(float(laplacian.std()) if laplacian.size else 0.0, 3),
        "entropy": round(float(gray.entropy()) + 0.0, 4),  # + 0.0: never -0.0
        "colourfulness": round(float(spread.mean()) / 255.0 if spread.size else 0.0, 4),
    }


#: The stored form: the version, then each fact in the order of :data:`COLUMNS` (little-endian).
_PACKED = struct.Struct("<B8q5f")


def facts_to_bytes(facts: PixelFacts) -> bytes:
    """``facts`` as a few bytes, to store beside an embedding."""
    return _PACKED.pack(FACTS_VERSION, *astuple(facts))


def facts_from_bytes(data: bytes | None) -> PixelFacts | None:
    """Facts stored by :func:`facts_to_bytes`, or None when ``data`` holds none of this version's."""
    if data is None or len(data) != _PACKED.size or data[0] != FACTS_VERSION:
        return None
    return PixelFacts(*(round(v, 4) if isinstance(v, float) else v for v in _PACKED.unpack(data)[1:]))


def facts_table(facts: list[PixelFacts]) -> pd.DataFrame:
    """Many images' facts as columns: int64 fingerprints, float32 measures."""
    values = np.array([astuple(f) for f in facts], dtype=object).reshape(len(facts), len(COLUMNS))
    return pd.DataFrame(
        {
            name: values[:, i].astype(np.int64 if name.startswith("fingerprint") else np.float32)
            for i, name in enumerate(COLUMNS)
        }
    )
