"""Leaks: copies and near-copies of a photo in another split (a model tested on what it trained on).

Copies come from the copy tiers (:mod:`lookalike.audit.copies`); near-copies
are pairs of references in different splits among each other's ``k``
nearest, within the leak threshold. Calibrated with copies of a sample of the
collection's photos (re-saved, resized, cropped, mirrored, overlaid: the
gentle kinds of :mod:`lookalike.calibrate`), embedded as the references were:
their distances to their originals are what a near-copy's distance is.
"""

from __future__ import annotations

import numpy as np
from PIL import ImageOps

from lookalike.audit.confidence import Confidence, calibrated
from lookalike.audit.neighbours import NeighbourFacts
from lookalike.audit.report import Finding
from lookalike.audit.splits import Groups
from lookalike.calibrate import COPY_KINDS, HARD_KINDS
from lookalike.core import References
from lookalike.index.metrics import exact_distances
from lookalike.ingest.decode import ImageError, load_rgb

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
    paths = references.file_paths()
    copies, originals = [], []
    for position in rng.choice(with_files, min(SAMPLE, len(with_files)), replace=False).tolist():
        try:
            image = load_rgb(paths[position])
        except (ImageError, OSError):
            continue
        for kind, make in COPY_KINDS.items():
            if kind not in HARD_KINDS:
                copies.append(make(image, rng, ImageOps.flip(image)))
                originals.append(position)
    if not copies:
        return np.empty(0)
    extracted = references.embedder.extract(copies, batch_size=references.batch_size, verbose=False)
    ok = np.asarray(extracted.ok, dtype=np.int64)
    if not len(ok):
        return np.empty(0)
    origin = references.embeddings[np.asarray(originals)[ok]]
    return exact_distances(references.metric, references.project(extracted.embeddings), origin[:, None, :])[:, 0]


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
) -> list[Finding]:
    copied = {frozenset(f.positions) for f in copies if f.kind == "leak"}
    keep = [i for i, pair in enumerate(facts.leaks.tolist()) if frozenset(pair) not in copied]
    pairs, distances = facts.leaks[keep], facts.leak_distances[keep]
    planted = _copy_distances(references, with_files, rng)
    basis = f"{len(planted)} copies of the collection's photos (re-saved, resized, cropped, mirrored, overlaid)"
    scores, near = calibrated(-distances, -planted, min_precision, basis, population=len(references))
    if near.expected_precision is None and not len(planted):  # no images to copy: every pair within the threshold
        scores = np.where(distances <= threshold, 1.0 - distances / max(threshold, 1e-12), np.nan)
    found = [
        Finding(
            "leak",
            evaluation_first(int(pairs[i, 0]), int(pairs[i, 1]), groups),
            float(scores[i]),
            f"a near-copy in another split: distance {distances[i]:.3g} (leak threshold {threshold:.3g})",
        )
        for i in np.flatnonzero(~np.isnan(scores)).tolist()
    ]
    if copied and near.expected_precision is not None:  # copies checked on their pixels count as sure
        total = len(copied) + len(found)
        near.expected_precision = (len(copied) + near.expected_precision * len(found)) / total
    near.basis += "; copies checked on the pixels of both files" if copied else ""
    near.threshold = -near.threshold  # a distance, as the leak threshold is
    confidence["leak"] = near
    return found
