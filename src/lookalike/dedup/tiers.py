"""How much two images are the same: ``exact``, ``same-pixels``, ``resized``, ``edited`` or ``similar``.

Near-duplicate groups come from close embeddings, and close embeddings alone
cannot tell a copy from a burst shot of the same scene. Each pair is labelled
with the strongest of these that holds, checked from the cheapest:

- ``exact``: the same bytes (SHA-256 of the files; no decoding).
- ``same-pixels``: the same decoded pixels once EXIF orientation is applied (a
  re-saved PNG, changed metadata).
- ``resized``: the same picture at another size or quality: both shrunk to the
  smaller one's size (at most :data:`COMPARE_SIDE` pixels on a side), grey
  levels close (PSNR at least :data:`RESIZED_PSNR` dB), aspect ratios
  within 2 %.
- ``edited``: a crop, rotation, overlay or mirror: geometric verification
  (local features + RANSAC, the mirror image tried too) confirms them; needs
  ``lookalike[verify]``.
- ``similar``: close embeddings only.

Tiers that need pixels need the files: references without paths are all ``similar``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from lookalike.files import file_sha256
from lookalike.ingest.decode import ImageError, load_rgb

__all__ = ["COPY_TIERS", "RESIZED_PSNR", "TIERS", "Sameness", "check_tiers"]

TIERS = ("exact", "same-pixels", "resized", "edited", "similar")
#: What a person calls a copy, an edited copy included: what dedup acts on unless told otherwise. Never
#: ``similar``: close embeddings alone also link burst shots and look-alikes. Without ``lookalike[verify]``
#: an edited copy cannot be confirmed, stays ``similar`` and is left alone.
COPY_TIERS = ("exact", "same-pixels", "resized", "edited")
#: Lowest PSNR (dB) of two images shrunk to a common size that still counts as ``resized``. Measured by
#: ``benchmarks/tiers.py`` on 100 neardup originals: their JPEG q60 re-saves and 1/2 and 1/4 resizes were at
#: 24.9 dB or more, distinct clothing look-alikes at 16.8 dB or less (1,000 pairs); 23 dB leaves room on both sides.
RESIZED_PSNR = 23.0
#: Longest side the ``resized`` test compares at: enough for detail, cheap for 40 MP photos.
COMPARE_SIDE = 512
_ASPECT_TOLERANCE = 0.02


def check_tiers(tiers: Any) -> tuple[str, ...]:
    """A tier name or a list of them, validated, in strength order."""
    from lookalike.errors import InvalidArgument

    wanted = {tiers} if isinstance(tiers, str) else set(tiers)
    unknown = wanted - set(TIERS)
    if unknown or not wanted:
        raise InvalidArgument(f"tiers must be some of {TIERS}, got {tiers!r}")
    return tuple(t for t in TIERS if t in wanted)


class Sameness:
    """Labels pairs of image files with their tier; file hashes and decoded images are kept per path.

    Parameters
    ----------
    verifier : lookalike.verify.Verifier, True or None
        For the ``edited`` tier: a verifier (True: the default one). None
        leaves ``edited`` out (pairs that are not ``resized`` are ``similar``).
    """

    def __init__(self, verifier: Any = None):
        self.verifier = verifier
        self._digests: dict[str, str | None] = {}
        self._images: dict[str, Image.Image | None] = {}

    def tier(self, a: str | None, b: str | None) -> str:
        """The strongest tier that holds between the images at paths ``a`` and ``b``."""
        if a is None or b is None:
            return "similar"
        digest_a, digest_b = self._digest(a), self._digest(b)
        if digest_a is not None and digest_a == digest_b:
            return "exact"
        image_a, image_b = self._image(a), self._image(b)
        if image_a is not None and image_b is not None:
            if image_a.size == image_b.size and np.array_equal(np.asarray(image_a), np.asarray(image_b)):
                return "same-pixels"
            if resized_psnr(image_a, image_b) >= RESIZED_PSNR:
                return "resized"
        if self.verifier is not None and self._verified(a, b):
            return "edited"
        return "similar"

    def tiers(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[str]:
        return [self.tier(a, b) for a, b in pairs]

    def _digest(self, path: str) -> str | None:
        if path not in self._digests:
            try:
                self._digests[path] = file_sha256(path)
            except OSError:
                self._digests[path] = None
        return self._digests[path]

    def _image(self, path: str) -> Image.Image | None:
        if path not in self._images:
            try:
                self._images[path] = load_rgb(path)
            except ImageError:
                self._images[path] = None
        return self._images[path]

    def _verified(self, a: str, b: str) -> bool:
        from lookalike.verify import Verifier, verify_pairs

        verifier = Verifier() if self.verifier is True else self.verifier
        inliers = verify_pairs([(0, 1)], [a, b], verifier, verbose=False)
        return bool(inliers[0] >= verifier.min_inliers)


def resized_psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR (dB) of two images' grey levels at the smaller one's size (at most :data:`COMPARE_SIDE`); 0 when
    their aspect ratios differ by more than 2 % (a crop is not a resize)."""
    (wa, ha), (wb, hb) = a.size, b.size
    if abs(wa / ha - wb / hb) > _ASPECT_TOLERANCE * max(wa / ha, wb / hb):
        return 0.0
    small = a if wa * ha <= wb * hb else b
    scale = min(1.0, COMPARE_SIDE / max(small.size))
    size = (max(1, round(small.size[0] * scale)), max(1, round(small.size[1] * scale)))
    x = np.asarray(a.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64)
    y = np.asarray(b.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
