"""Leaks: copies and near-copies of a photo in another split (a model tested on what it trained on).

Copies come from the copy tiers (:mod:`lookalike.audit.copies`); near-copies
are pairs of references in different splits among each other's ``k``
nearest, within the leak threshold. Their precision is measured on random
pairs across splits: the share of them within a distance, times the number of
such pairs, is the number of near-copies to expect by chance at that
distance; the rest of those found are real.
"""

from __future__ import annotations

import numpy as np

from lookalike.audit.confidence import Confidence
from lookalike.audit.neighbours import NeighbourFacts
from lookalike.audit.report import Finding
from lookalike.audit.splits import Groups
from lookalike.core import References
from lookalike.index.metrics import exact_distances_at

__all__ = ["RANDOM_PAIRS", "evaluation_first", "near_copy_findings"]

#: Random pairs across splits measured for chance near-copies.
RANDOM_PAIRS = 200_000
#: Split names of the training side: the other photo of a leak is the one at fault.
TRAINING = ("train", "training")


def evaluation_first(a: int, b: int, groups: Groups) -> list[int]:
    """The two references of a leak, the one on the evaluation side (validation, test) first."""
    if (groups.split_of(a) or "").lower() in TRAINING and (groups.split_of(b) or "").lower() not in TRAINING:
        return [b, a]
    return [a, b]


def _chance_distances(references: References, splits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distances of random pairs of references in different splits."""
    with_split = np.flatnonzero(splits >= 0)
    first = rng.choice(with_split, RANDOM_PAIRS)
    second = rng.choice(with_split, RANDOM_PAIRS)
    across = splits[first] != splits[second]
    first, second = first[across], second[across]
    vectors = references.embeddings
    return np.concatenate(
        [
            exact_distances_at(references.metric, vectors[first[s : s + 8192]], vectors, second[s : s + 8192, None])[
                :, 0
            ]
            for s in range(0, len(first), 8192)
        ]
        or [np.empty(0)]
    )


def near_copy_findings(
    references: References,
    facts: NeighbourFacts,
    groups: Groups,
    names: list[str],
    threshold: float,
    copies: list[Finding],
    rng: np.random.Generator,
    confidence: dict[str, Confidence],
) -> list[Finding]:
    splits = groups.splits
    copied = {frozenset(f.positions) for f in copies if f.kind == "leak"}
    keep = [i for i, pair in enumerate(facts.leaks.tolist()) if frozenset(pair) not in copied]
    pairs, distances = facts.leaks[keep], facts.leak_distances[keep]
    chance = np.sort(_chance_distances(references, splits, rng))
    sizes = np.bincount(splits[splits >= 0]).astype(np.float64)
    across = (sizes.sum() ** 2 - (sizes**2).sum()) / 2  # pairs of references in different splits
    order = np.argsort(distances, kind="stable")
    expected = np.searchsorted(chance, distances[order], side="right") / max(len(chance), 1) * across
    precision = np.clip(1.0 - expected / np.arange(1, len(order) + 1), 0.0, 1.0)
    precision = np.minimum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    copy_leaks = len(copied)
    found = [
        Finding(
            "leak",
            evaluation_first(int(pairs[i, 0]), int(pairs[i, 1]), groups),
            float(p),
            f"a near-copy in another split: distance {distances[i]:.3g} (leak threshold {threshold:.3g})",
        )
        for i, p in zip(order.tolist(), precision.tolist(), strict=True)
    ]
    near = float(precision.mean()) if len(precision) else None
    total = copy_leaks + len(found)
    if total:
        expected_precision = (copy_leaks + (near or 0.0) * len(found)) / total
    else:
        expected_precision = 1.0 - min(1.0, float(np.mean(chance <= threshold)) * across) if len(chance) else None
    confidence["leak"] = Confidence(
        threshold,
        expected_precision,
        len(chance),
        None,
        f"{len(chance):,} random pairs across splits (near-copies); copies checked on their pixels",
    )
    return found
