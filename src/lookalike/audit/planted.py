"""Problems planted in copies of a sample of the collection's own photos: what each finding kind must find.

Each maker takes a decoded photo and a random generator (drawing the
problem's strength from a range, mild to severe) and returns the damaged
photo, re-saved as a JPEG as a real one would be. The audit measures each
kind's findings on them (see :mod:`lookalike.audit.confidence`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from lookalike.config import cpu_count
from lookalike.ingest.decode import ImageError, load_rgb
from lookalike.references.core import References

__all__ = ["OUTLIER_MAKERS", "QUALITY_MAKERS", "embedded", "jpeg", "planted_in_sample", "read_size"]

Maker = Callable[[Image.Image, np.random.Generator], Image.Image]
T = TypeVar("T")


def planted_in_sample(
    references: References,
    with_files: np.ndarray,
    count: int,
    rng: np.random.Generator,
    plant: Callable[[int, Image.Image, np.random.Generator], T],
    min_size: tuple[int, int] | None = None,
) -> list[tuple[int, T]]:
    """``(position, plant(nth, photo, generator))`` for up to ``count`` references drawn from ``with_files``, in
    position order, skipping those that no longer decode. Each photo is decoded whole or, with ``min_size``, reduced
    as :func:`lookalike.ingest.decode.load_rgb` reduces. Photos are decoded and planted on every core (Pillow lets go
    of the interpreter while it decodes, filters and encodes), each with a generator of its own, so what is planted
    does not depend on the threads' order."""
    paths = references.file_paths()
    positions = np.sort(rng.choice(with_files, min(count, len(with_files)), replace=False)).tolist()
    seeds = rng.integers(0, 2**63 - 1, len(positions)).tolist()

    def one(nth: int) -> T | None:
        try:
            image = load_rgb(paths[positions[nth]], min_size)
        except (ImageError, OSError):
            return None  # gone or damaged since indexing: the sample is one photo smaller
        return plant(nth, image, np.random.default_rng(seeds[nth]))

    with ThreadPoolExecutor(cpu_count()) as pool:
        planted = list(pool.map(one, range(len(positions))))
    return [(position, done) for position, done in zip(positions, planted, strict=True) if done is not None]


def embedded(references: References, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors in the indexed space, positions in images that embedded)``: the images embedded as the references."""
    if not images:
        return np.empty((0, references.dim), np.float32), np.empty(0, np.int64)
    extracted = references.embedder.extract(images, batch_size=references.batch_size, verbose=False, facts=False)
    return references.project(extracted.embeddings), np.asarray(extracted.ok, dtype=np.int64)


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    """``image`` after a JPEG save and load."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _blurred(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # A radius of 0.5-2 % of the longest side: from a slip of the focus to a photo nothing can be read off.
    return jpeg(image.filter(ImageFilter.GaussianBlur(max(image.size) * rng.uniform(0.005, 0.02))))


def _darkened(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jpeg(ImageEnhance.Brightness(image).enhance(rng.uniform(0.15, 0.45)))


def _overexposed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A veil of light (flare, a blown exposure): every level pulled 60-90 % of the way to white."""
    return jpeg(Image.blend(image.convert("RGB"), Image.new("RGB", image.size, (255, 255, 255)), rng.uniform(0.6, 0.9)))


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


def _zoomed(image: Image.Image, rng: np.random.Generator, size: tuple[int, int] | None = None) -> Image.Image:
    """A tenth of each side, anywhere, enlarged to the whole (made ``size``, the photo's own by default): a texture,
    not a thing the collection shows."""
    w, h = image.size
    cw, ch = max(8, w // 10), max(8, h // 10)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return jpeg(image.crop((left, top, left + cw, top + ch)).resize(size or (w, h), Image.Resampling.BICUBIC))


def _shuffled(image: Image.Image, rng: np.random.Generator, size: tuple[int, int] | None = None) -> Image.Image:
    """The photo (shrunk to ``size`` first) cut into 8 x 8 tiles put back in a random order: its colours and
    textures, none of its shapes."""
    if size is not None and size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    w, h = image.size
    tw, th = max(1, w // 8), max(1, h // 8)
    tiles = [image.crop((x * tw, y * th, (x + 1) * tw, (y + 1) * th)) for y in range(8) for x in range(8)]
    out = Image.new("RGB", (tw * 8, th * 8))
    for place, tile in zip(rng.permutation(64).tolist(), tiles, strict=True):
        out.paste(tile, ((place % 8) * tw, (place // 8) * th))
    return jpeg(out)


#: Images unlike anything in the collection, made from its own photos (each kind of every n-th photo sampled): what an
#: outlier looks like to the network. The calibration takes them for the collection's real outliers, so together they
#: must lie about as far from everything as those do. Planted among clothing, photos of other sets (buildings,
#: animals) lay at a median 2.3 robust deviations, enlarged tenths at 2.3, 8 x 8 shuffles at 1.7. Shuffles alone
#: made the audit expect a precision of 0.50 where it found 0.31-0.39, enlarged tenths alone 0.64-0.71 (errs low);
#: two of them to one shuffle, 0.42-0.66 (see docs/audit.md).
#: Each takes the photo, a generator and the size to make it at (see :func:`read_size`).
OUTLIER_MAKERS: dict[str, tuple[Callable[..., Image.Image], int]] = {"zoomed": (_zoomed, 1), "shuffled": (_shuffled, 2)}


def read_size(size: tuple[int, int], least: tuple[int, int]) -> tuple[int, int]:
    """The size a picture of ``size`` is seen at by a network that reads it no smaller than ``least`` (twice its
    input, as the indexer decodes): shrunk alike on both sides, never enlarged. A camera photo's planted outlier made
    at its own size (a 3,000 px enlargement, a JPEG of it) took 20 s of an audit of 800 such photos, for what the
    network sees at 224 px."""
    factor = min(size[0] / least[0], size[1] / least[1])
    if factor <= 1:
        return size
    return max(1, round(size[0] / factor)), max(1, round(size[1] / factor))
