"""What each reference's nearest neighbours say about it, in one blockwise pass over the references.

For every reference: how far its ``k`` nearest are (outliers), how many of
them carry its class and which other class most of them carry (label
errors), and which of them lie in another split within the leak threshold
(near-copies across splits). Memory is one block of neighbours and a few
numbers per reference, never an n x n matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.references.core import References

__all__ = ["NeighbourFacts", "neighbour_facts", "spread_of", "votes"]


@dataclass
class NeighbourFacts:
    """The pass's results; ``kept_*`` are the full neighbour lists of the references at ``kept`` (the calibration
    sample), so that planted labels can be voted on with the neighbours they would have had."""

    spread: np.ndarray  # (n,) mean distance to the spread_k nearest (see spread_of)
    spread_k: int
    own_vote: np.ndarray | None  # (n,) share of the neighbours with a class that carry the reference's own
    other: np.ndarray | None  # (n,) the class most of the other neighbours carry (-1: none)
    other_vote: np.ndarray | None  # (n,) the share of neighbours carrying it
    leaks: np.ndarray  # (m, 2) positions of pairs across splits within the threshold, lower position first
    leak_distances: np.ndarray  # (m,)
    kept: np.ndarray
    kept_positions: np.ndarray  # (len(kept), k)


def votes(neighbour_classes: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(own share, commonest other class, its share)`` of each row of neighbour classes (-1: no class).

    Examples
    --------
    >>> share, other, other_share = votes(np.array([[1, 2, 2, -1]]), np.array([1]))
    >>> share.round(3).tolist(), other.tolist(), other_share.round(3).tolist()
    ([0.333], [2], [0.667])
    """
    valid = neighbour_classes >= 0
    counted = np.maximum(valid.sum(axis=1), 1)
    own_share = ((neighbour_classes == own[:, None]) & valid).sum(axis=1) / counted
    # k is small: each neighbour's class counted among its row by comparing all pairs (b x k x k booleans).
    others = np.where(valid & (neighbour_classes != own[:, None]), neighbour_classes, -1)
    counts = (others[:, :, None] == others[:, None, :]).sum(axis=2)
    counts[others < 0] = 0
    best = counts.argmax(axis=1)
    rows = np.arange(len(others))
    other = np.where(counts[rows, best] > 0, others[rows, best], -1)
    return own_share.astype(np.float32), other.astype(np.int32), (counts[rows, best] / counted).astype(np.float32)


def spread_of(distances: np.ndarray, neighbour_classes: np.ndarray | None, own: np.ndarray | None) -> np.ndarray:
    """Each row's mean distance to its nearest (``distances``, nearest first), a neighbour of another class than the
    row's own counted as far as the farthest: a stranger among photos of its class is far from them, however near
    the other strangers planted in other classes lie (-1: no class, every neighbour counted as it is).

    Examples
    --------
    >>> spread_of(np.array([[0.1, 0.2, 0.4]]), np.array([[1, 2, 1]]), np.array([1])).round(3).tolist()
    [0.3]
    """
    if neighbour_classes is None or own is None:
        return distances.mean(axis=1)
    counted = (neighbour_classes == own[:, None]) | (own[:, None] < 0)
    return np.where(counted, distances, distances[:, -1:]).mean(axis=1)


def neighbour_facts(
    references: References,
    k: int,
    classes: np.ndarray | None,
    splits: np.ndarray | None,
    threshold: float | None,
    kept: np.ndarray,
    spread_k: int | None = None,
) -> NeighbourFacts:
    """One pass over :meth:`References.neighbour_blocks` gathering :class:`NeighbourFacts`: votes and leaks from the
    ``k`` nearest, the spread from the ``spread_k`` nearest (default ``k``; one search serves both)."""
    n = len(references)
    k = min(k, n - 1)
    spread_k = min(spread_k or k, n - 1)
    spread = np.empty(n, np.float32)
    own_vote = np.empty(n, np.float32) if classes is not None else None
    other = np.empty(n, np.int32) if classes is not None else None
    other_vote = np.empty(n, np.float32) if classes is not None else None
    kept = np.sort(np.asarray(kept, dtype=np.int64))
    kept_positions = np.empty((len(kept), k), np.int64)
    pairs, pair_distances = [], []
    for start, wide, positions in references.neighbour_blocks(max(k, spread_k)):
        stop = start + len(positions)
        own = classes[start:stop] if classes is not None else None
        spread[start:stop] = spread_of(
            wide[:, :spread_k], classes[positions[:, :spread_k]] if classes is not None else None, own
        )
        distances, positions = wide[:, :k], positions[:, :k]
        if classes is not None:
            own_vote[start:stop], other[start:stop], other_vote[start:stop] = votes(classes[positions], own)
        if splits is not None and threshold is not None:
            own = splits[start:stop, None]
            theirs = splits[positions]
            across = (theirs != own) & (theirs >= 0) & (own >= 0) & (distances <= threshold)
            rows, columns = np.nonzero(across)
            if len(rows):
                a, b = rows + start, positions[rows, columns]
                pairs.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
                pair_distances.append(distances[rows, columns])
        inside = kept[(kept >= start) & (kept < stop)]
        if len(inside):
            kept_positions[np.searchsorted(kept, inside)] = positions[inside - start]
    leaks = np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64)
    leak_distances = np.concatenate(pair_distances) if pair_distances else np.empty(0, np.float32)
    if len(leaks):  # each pair once (both ends may list the other)
        leaks, first = np.unique(leaks, axis=0, return_index=True)
        leak_distances = leak_distances[first]
    return NeighbourFacts(spread, spread_k, own_vote, other, other_vote, leaks, leak_distances, kept, kept_positions)
