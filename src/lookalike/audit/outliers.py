"""Outliers: photos far from everything else, and from what is usual in their own class.

A photo's badness is its mean distance to its :data:`K` nearest references, in
robust standard deviations (median, MAD) from the collection's usual and from
its class's usual: the smaller of the two, so that an outlier is far by both
(a loose class does not make its members outliers, a tight one does not hide
a stranger). On clothing with landmarks and animals planted among the garments
this ranked them better than either alone (precision 0.76 at recall 0.8, where
the class alone gave 0.64), and 20 neighbours better than 10 (0.58). Where there are classes, a neighbour of another
class counts as far as the 20th (:func:`~lookalike.audit.neighbours.spread_of`): strangers planted in several classes
(photos of one building filed as hats, skirts, pants) were each other's nearest and hid; on the audit benchmark the
planted outliers found at precision 0.5 went from 0.87 to 0.96 of them. Calibrated
with copies of a sample of the collection's photos made unlike anything in it
(a tenth of each side enlarged to the whole; of every other one, tiles shuffled), embedded as the references
were.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.audit.confidence import Confidence, calibrated
from lookalike.audit.neighbours import NeighbourFacts, spread_of
from lookalike.audit.planted import OUTLIER_MAKERS, embedded, planted_in_sample, read_size
from lookalike.audit.report import Finding
from lookalike.audit.splits import Groups
from lookalike.references.core import References

__all__ = ["outlier_findings"]

#: Photos copied into outliers for the calibration (see :data:`OUTLIER_MAKERS`). The findings stop where the estimated
#: precision falls to the least asked for, often on a flat stretch of the curve, where a few planted outliers more
#: or less move them a long way: on the audit benchmark's collection, 40 draws of 30 enlarged tenths stopped at
#: 0.42-0.78 precision, of 150 at 0.64-0.71.
SAMPLE = 150
#: Neighbours whose mean distance is a photo's spread.
K = 20
#: Without images to calibrate on (precomputed embeddings): robust deviations from the class's median that make an
#: outlier.
UNCALIBRATED = 5.0


class _Spread:
    """Median and robust deviation of the neighbour distances per class (code -1: the whole collection)."""

    def __init__(self, spread: np.ndarray, classes: np.ndarray | None):
        self.classes = classes
        self.centre: dict[int, tuple[float, float]] = {-1: self._of(spread)}
        if classes is not None:
            order = np.argsort(classes, kind="stable")  # each class's rows together: one pass, not one per class
            codes, starts, counts = np.unique(classes[order], return_index=True, return_counts=True)
            for code, start, count in zip(codes.tolist(), starts.tolist(), counts.tolist(), strict=True):
                if code >= 0:
                    members = spread[order[start : start + count]]
                    self.centre[code] = self._of(members) if count >= 5 else self.centre[-1]

    @staticmethod
    def _of(values: np.ndarray) -> tuple[float, float]:
        median = float(np.median(values))
        deviation = 1.4826 * float(np.median(np.abs(values - median)))
        return median, max(deviation, 1e-6 * max(abs(median), 1e-12))

    def badness(self, spread: np.ndarray, codes: np.ndarray | None = None) -> np.ndarray:
        """Robust deviations of each distance from the collection's median and from its class's (``codes``;
        default: the references'), the smaller of the two."""
        if codes is None:
            codes = self.classes if self.classes is not None else np.full(len(spread), -1)
        top = max(self.centre)
        centre = np.array([self.centre.get(c, self.centre[-1]) for c in range(-1, top + 1)])
        overall = (spread - centre[0, 0]) / centre[0, 1]
        return np.minimum(overall, (spread - centre[codes + 1, 0]) / centre[codes + 1, 1])


def _planted(references: References, spreads: _Spread, with_files: np.ndarray, classes, k: int, rng) -> np.ndarray:
    """The badness of outliers made from a sample of the photos (none when the model cannot embed images)."""
    if not len(with_files) or references.spec is None:
        return np.empty(0)

    width, height = references.spec.pixel_size

    def strangers(nth: int, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        size = read_size(image.size, (2 * width, 2 * height))
        return [make(image, rng, size) for make, every in OUTLIER_MAKERS.values() if nth % every == 0]

    images, codes = [], []
    for position, made in planted_in_sample(references, with_files, SAMPLE, rng, strangers):
        images += made
        codes += [classes[position] if classes is not None else -1] * len(made)
    vectors, ok = embedded(references, images)
    if not len(ok):
        return np.empty(0)
    distances, positions = references.search(vectors, k)
    codes = np.asarray(codes)[ok]
    return spreads.badness(spread_of(distances, classes[positions] if classes is not None else None, codes), codes)


def outlier_findings(
    references: References,
    facts: NeighbourFacts,
    groups: Groups,
    with_files: np.ndarray,
    rng: np.random.Generator,
    min_precision: float,
    confidence: dict[str, Confidence],
    explained: np.ndarray,
) -> list[Finding]:
    """The outliers among the references; ``explained`` (a mask) marks those another finding already explains,
    which are neither reported nor counted where the precision to expect is estimated."""
    spreads = _Spread(facts.spread, groups.classes)
    badness = np.where(explained, np.nan, spreads.badness(facts.spread))
    planted = _planted(references, spreads, with_files, groups.classes, facts.spread_k, rng)
    scores, confidence["outlier"] = calibrated(
        badness, planted, min_precision, f"{len(planted)} copies of the collection's photos made unlike any"
    )
    if not len(planted):  # no images to make outliers of: the plain rule, uncalibrated
        scores = np.where(badness >= UNCALIBRATED, np.minimum(1.0, badness / (2 * UNCALIBRATED)), np.nan)
        confidence["outlier"].basis = f"not calibrated (no images): {UNCALIBRATED} robust deviations or more"
    found = []
    for position in np.flatnonzero(~np.isnan(scores)).tolist():
        label = groups.class_of(position)
        within = f"of {label!r} photos" if label is not None else "of the collection"
        found.append(
            Finding(
                "outlier",
                [position],
                float(scores[position]),
                f"its nearest neighbours are {badness[position]:.1f} deviations farther than usual {within}",
            )
        )
    return found
