"""Leaks: copies and near-copies of a photo in another split (a model tested on what it trained on).

Copies come from the copy tiers (:mod:`lookalike.audit.copies`); near-copies
are pairs of references in different splits among each other's ``k``
nearest, within the leak threshold, that are another capture of one scene:
laid on each other by local features (the copy tiers' alignment), however
much of the picture changed. Close embeddings alone are not enough: garments
photographed alike on one hanger lie as close as two photos of one garment
(on the clothing benchmark, 2 of the 51 such pairs were). Scored with copies
of a sample of the collection's photos (re-saved, resized, cropped, mirrored,
overlaid: the gentle kinds of :mod:`lookalike.dedup.calibrate`), embedded as
the references were: their distances to their originals are what a
near-copy's distance is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from lookalike.audit.confidence import Confidence, calibrated
from lookalike.audit.neighbours import NeighbourFacts
from lookalike.audit.planted import embedded, planted_in_sample
from lookalike.audit.report import Finding
from lookalike.audit.splits import Groups
from lookalike.dedup import DuplicateFinder
from lookalike.dedup.calibrate import COPY_KINDS, HARD_KINDS
from lookalike.index.metrics import exact_distances
from lookalike.references.core import References

__all__ = ["SAMPLE", "evaluation_first", "near_copy_findings"]

#: Photos copied (in each gentle kind) to calibrate near-copy leaks.
SAMPLE = 30
#: Split names of the training side: the other photo of a leak is the one at fault.
TRAINING = ("train", "training")


def evaluation_first(a: int, b: int, groups: Groups) -> list[int]:
    """The two references of a leak, the one on the evaluation side (validation, test) first."""
    if (groups.split_of(a) or "").lower() in TRAINING and (groups.split_of(b) or "").lower() not in TRAINING:
        return [b, a]
    return [a, b]


def _copy_distances(references: References, with_files: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distances of gentle copies of a sample of the photos to their originals (none without images)."""
    if not len(with_files) or references.spec is None:
        return np.empty(0)

    def gentle_copies(nth: int, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        return [make(image, rng, ImageOps.flip(image)) for kind, make in COPY_KINDS.items() if kind not in HARD_KINDS]

    # Made at the size the indexer read their photos at (twice the network's input), as the other kinds' problems
    # are: a camera photo's copies made whole took most of this calibration's time for what the network sees.
    width, height = references.spec.pixel_size
    copies, originals = [], []
    for position, made in planted_in_sample(
        references, with_files, SAMPLE, rng, gentle_copies, min_size=(2 * width, 2 * height)
    ):
        copies += made
        originals += [position] * len(made)
    vectors, ok = embedded(references, copies)
    if not len(ok):
        return np.empty(0)
    origin = references.embeddings[np.asarray(originals)[ok]]
    return exact_distances(references.metric, vectors, origin[:, None, :])[:, 0]


def near_copy_findings(
    references: References,
    facts: NeighbourFacts,
    groups: Groups,
    threshold: float,
    copies: list[Finding],
    with_files: np.ndarray,
    rng: np.random.Generator,
    min_precision: float,
    confidence: dict[str, Confidence],
    finder: DuplicateFinder | None = None,
) -> list[Finding]:
    """Near-copy leaks (``finder``: what judges a pair's pixels; without one, close embeddings alone decide)."""
    copied = {frozenset(f.positions) for f in copies if f.kind == "leak"}
    distances = facts.leak_distances
    planted = _copy_distances(references, with_files, rng)
    basis = f"{len(planted)} copies of the collection's photos (re-saved, resized, cropped, mirrored, overlaid)"
    # Calibrated on every pair within the threshold (the copies too: they are the surest near-copies), then the pairs
    # already reported as copies are left out.
    scores, near = calibrated(-distances, -planted, min_precision, basis, population=len(references))
    if near.expected_precision is None and not len(planted):  # no images to copy: every pair within the threshold
        scores = np.where(distances <= threshold, 1.0 - distances / max(threshold, 1e-12), np.nan)
    pairs = facts.leaks
    is_copy = np.array([frozenset(pair) in copied for pair in pairs.tolist()], dtype=bool)
    reported = int(np.sum(~np.isnan(scores)))  # pairs the precision was measured over, copies among them
    copies_among = int(np.sum(~np.isnan(scores) & is_copy))
    scores[is_copy] = np.nan
    found = []
    for i in np.flatnonzero(~np.isnan(scores)).tolist():
        a, b = int(pairs[i, 0]), int(pairs[i, 1])
        verdict = finder.verdict(a, b) if finder is not None else None
        if verdict is not None and not verdict.same_scene:
            continue  # a look-alike: something photographed alike, not the same thing again
        reason = f"a near-copy in another split: distance {distances[i]:.3g} (leak threshold {threshold:.3g})"
        found.append(
            Finding(
                "leak",
                evaluation_first(a, b, groups),
                float(scores[i]),
                reason if verdict is None else f"{reason}; {verdict.reason}",
            )
        )
    if finder is not None:
        # Scored by their distance, the near-copies left are sure of at least that: the look-alikes among the pairs
        # at that distance are gone. The copies count as their tier says.
        leaks = [f.score for f in copies if f.kind == "leak"] + [f.score for f in found]
        if leaks:
            near.expected_precision = float(np.mean(leaks))
        near.basis += "; pairs checked on the pixels of both files: copies, or laid on each other by local features"
    elif copied and near.expected_precision is not None:
        # The real pairs measured, less the copies among them, are the near-copies' real ones; the copies (checked on
        # their pixels) count as sure, those beyond the threshold too (found by their fingerprints).
        real = near.expected_precision * reported - copies_among + len(copied)
        near.expected_precision = min(1.0, max(0.0, real / (len(copied) + len(found))))
        near.basis += "; copies checked on the pixels of both files"
    near.threshold = -near.threshold  # a distance, as the leak threshold is
    confidence["leak"] = near
    return found
