"""Image-quality findings from the facts the indexer read off the pixels (:mod:`lookalike.ingest.pixel_facts`).

Each kind is a *badness* computed from the stored columns, so an audit
decodes no photo of the collection; only the sample whose copies are damaged
for the calibration is decoded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from lookalike.audit.planted import QUALITY_MAKERS, planted_in_sample
from lookalike.ingest.pixel_facts import SHARPNESS_SIDE, pixel_measures
from lookalike.references.core import References

__all__ = ["COLOUR_SET", "QUALITY_KINDS", "badness", "planted_badness"]

QUALITY_KINDS = ("blurry", "dark", "bright", "low-information", "grayscale", "odd-size")
#: A collection is a colour one (where a grey photo stands out) when its median colourfulness, relative to
#: brightness, is above this.
COLOUR_SET = 0.1
#: Least spread of log sizes and aspect ratios taken for a collection whose photos all have one size.
_LEAST_SPREAD = 0.05


def _facts(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)


def _pixel_badness(table: pd.DataFrame) -> dict[str, np.ndarray]:
    brightness, contrast = _facts(table, "brightness"), _facts(table, "contrast")
    sharpness, colourfulness = _facts(table, "sharpness"), _facts(table, "colourfulness")
    # Blur lowers the Laplacian far more than the spread of grey levels: their ratio leaves flat photos out.
    blur = -np.log((sharpness + 1.0) / (contrast * 255.0 + 1.0))
    # The spread of grey levels against the most a photo of that brightness can have: a dark photo keeps its
    # shapes, a near-blank one (of any brightness) has none.
    level = np.clip(brightness, 0.01, 0.99)
    flat = -np.log(contrast / np.sqrt(level * (1 - level)) + 1e-3)
    grey = -colourfulness / (brightness + 0.05)  # a dark photo's colours are faint, not absent
    # Overexposed: bright and washed out; a white backdrop behind a garment is bright but keeps its spread.
    bright = brightness - contrast
    return {"blurry": blur, "dark": -brightness, "bright": bright, "low-information": flat, "grayscale": grey}


class _Sizes:
    """Robust spread of the collection's log areas and aspect ratios, to judge one size against."""

    def __init__(self, width: np.ndarray, height: np.ndarray):
        area, aspect = self._logs(width, height)
        self.area = np.nanmedian(area) if np.isfinite(area).any() else np.nan
        self.aspect = np.nanmedian(aspect) if np.isfinite(aspect).any() else np.nan
        self.area_spread = max(1.4826 * np.nanmedian(np.abs(area - self.area)), _LEAST_SPREAD)
        self.aspect_spread = max(1.4826 * np.nanmedian(np.abs(aspect - self.aspect)), _LEAST_SPREAD)

    @staticmethod
    def _logs(width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(width * height), np.log(width / height)

    def badness(self, width: np.ndarray, height: np.ndarray) -> np.ndarray:
        """How many spreads a photo is smaller than most, or how far its aspect ratio is from most."""
        area, aspect = self._logs(width, height)
        return np.maximum((self.area - area) / self.area_spread, np.abs(aspect - self.aspect) / self.aspect_spread)


def badness(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each quality kind's badness for every row of a reference table (NaN where its facts are missing)."""
    found = _pixel_badness(table)
    width, height = _facts(table, "width"), _facts(table, "height")
    found["odd-size"] = _Sizes(width, height).badness(width, height)
    return found


def is_colour_set(table: pd.DataFrame) -> bool:
    """Whether the collection is in colour (so that a grey photo in it is a finding)."""
    relative = -_pixel_badness(table)["grayscale"]
    return bool(np.isfinite(relative).any() and np.nanmedian(relative) > COLOUR_SET)


def planted_badness(
    references: References, with_files: np.ndarray, count: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The badness of each quality problem planted in copies of ``count`` photos drawn from ``with_files``.

    Odd sizes are planted by size alone (a fifth of the sides, or one side three times the other): the size
    is all that kind looks at.
    """
    table = references.table

    def damaged(nth: int, image: Image.Image, rng: np.random.Generator) -> dict[str, dict]:
        image = image.reduce(max(1, max(image.size) // SHARPNESS_SIDE))
        return {kind: pixel_measures(make(image, rng)) for kind, make in QUALITY_MAKERS.items()}

    # Read as the indexer read the photo its facts came from (reduced to twice the network's input), then shrunk as
    # the facts are measured: damage planted at that size measures as it would have on the photo, at a fraction of
    # the cost of planting it whole (a blur of the whole photo took most of an audit's calibration).
    width, height = references.spec.pixel_size
    sample = planted_in_sample(references, with_files, count, rng, damaged, (2 * width, 2 * height))
    positions = np.asarray([position for position, _ in sample], dtype=np.int64)
    planted = {
        kind: _pixel_badness(pd.DataFrame([facts[kind] for _, facts in sample]))[kind] if sample else np.array([])
        for kind in QUALITY_MAKERS
    }
    width, height = _facts(table, "width")[positions], _facts(table, "height")[positions]
    sizes = _Sizes(_facts(table, "width"), _facts(table, "height"))
    stretch = np.where(rng.random(len(positions)) < 0.5, 3.0, 1 / 3)
    planted["odd-size"] = np.concatenate(
        [sizes.badness(np.round(width / 5), np.round(height / 5)), sizes.badness(width * stretch, height)]
    )
    return planted
