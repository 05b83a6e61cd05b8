"""Problems planted in copies of a sample of the collection's own photos: what each finding kind must find.

Each maker takes a decoded photo and a random generator (drawing the
problem's strength from a range, mild to severe) and returns the damaged
photo, re-saved as a JPEG as a real one would be. The audit measures each
kind's findings on them (see :mod:`lookalike.audit.confidence`).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

__all__ = ["OUTLIER_MAKERS", "QUALITY_MAKERS", "jpeg"]

Maker = Callable[[Image.Image, np.random.Generator], Image.Image]


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    """``image`` after a JPEG save and load."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _blurred(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # A radius of 0.5-2 % of the longest side: from a slip of the focus to a photo nothing can be read off.
    return jpeg(image.filter(ImageFilter.GaussianBlur(max(image.size) * rng.uniform(0.005, 0.02))))


def _darkened(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jpeg(ImageEnhance.Brightness(image).enhance(rng.uniform(0.1, 0.3)))


def _overexposed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jpeg(ImageEnhance.Brightness(image).enhance(rng.uniform(1.8, 3.0)))


def _near_blank(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # A lens cap, a wall, a pocket: almost one tone, with the photo's own faint trace.
    flat = ImageEnhance.Contrast(image.filter(ImageFilter.GaussianBlur(max(image.size) * 0.01)))
    return jpeg(flat.enhance(rng.uniform(0.02, 0.08)))


def _grey(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jpeg(ImageOps.grayscale(image).convert("RGB"))


#: The image-quality kinds planted, by the finding kind that must find them.
QUALITY_MAKERS: dict[str, Maker] = {
    "blurry": _blurred,
    "dark": _darkened,
    "bright": _overexposed,
    "low-information": _near_blank,
    "grayscale": _grey,
}


def _negative(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jpeg(ImageOps.invert(image.convert("RGB")))


def _shuffled(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo cut into 4 x 4 tiles put back in a random order: its colours, none of its shapes."""
    w, h = image.size
    tw, th = max(1, w // 4), max(1, h // 4)
    tiles = [image.crop((x * tw, y * th, (x + 1) * tw, (y + 1) * th)) for y in range(4) for x in range(4)]
    out = Image.new("RGB", (tw * 4, th * 4))
    for place, tile in zip(rng.permutation(16).tolist(), tiles, strict=True):
        out.paste(tile, ((place % 4) * tw, (place // 4) * th))
    return jpeg(out)


#: Images unlike anything in the collection, made from its own photos: what an outlier looks like to the network.
OUTLIER_MAKERS: dict[str, Maker] = {"negative": _negative, "shuffled": _shuffled}
