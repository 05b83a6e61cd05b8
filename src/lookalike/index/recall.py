"""Recall of an approximate index, measured against exact search on a sample of its own references."""

from __future__ import annotations

import numpy as np

from lookalike.index.exact import ExactIndex

#: Sampled recall the build-time tuning aims for.
TARGET_RECALL = 0.95


def sample_queries(n: int, sample: int = 200, seed: int = 0) -> np.ndarray:
    """Positions of up to ``sample`` references used as queries (fixed seed: the figure is reproducible)."""
    return np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact ``k`` nearest distances that the approximate answer matched.

    Compared by distance, not by position: a reference tied with the exact
    k-th neighbour is as good an answer as the one exact search happened to keep.

    Examples
    --------
    >>> recall_at_k(np.array([[0.0, 1.0, 3.0]]), np.array([[0.0, 1.0, 2.0]]))
    0.6666666666666666
    """
    if exact.size == 0:
        return 1.0
    hits = (found <= exact[:, -1:]).sum(axis=1)
    return float(np.mean(hits / exact.shape[1]))


def _without_self(distances: np.ndarray, positions: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` distances of each row once the query's own position is dropped."""
    keep = positions != own[:, None]
    keep[keep.sum(axis=1) > k, -1] = False  # self not found: drop the farthest instead
    return distances[keep].reshape(len(positions), -1)[:, :k]


def tune(index, k: int = 10, sample: int = 200, target: float = TARGET_RECALL) -> dict:
    """Pick the cheapest search effort whose sampled recall@k reaches ``target``, and report it.

    ``index`` is an :class:`~lookalike.index.approximate.ApproximateIndex`; its
    ``search_effort`` is set to the chosen value (the largest tried when none
    reaches the target). The queries are ``sample`` references, each searched
    for its ``k`` nearest *other* references (finding itself is too easy and
    would flatter the index); exact search runs once.

    Returns
    -------
    dict
        ``k``, ``queries``, ``recall`` (at the chosen effort), ``target``.
    """
    positions = sample_queries(len(index), sample)
    queries = np.asarray(index.vectors[positions])
    k = min(k, len(index) - 1)
    if k < 1:
        return {"k": int(k), "queries": 0, "recall": 1.0, "target": target}
    truth = _without_self(*ExactIndex(index.vectors, index.metric).search(queries, k + 1), positions, k)
    efforts = index.efforts() or (index.search_effort,)
    recall = 0.0
    for effort in efforts:
        found = _without_self(*index.search(queries, k + 1, effort=effort), positions, k)
        recall = recall_at_k(found, truth)
        if recall >= target:
            break
    index.search_effort = effort
    return {"k": int(k), "queries": int(len(positions)), "recall": round(recall, 4), "target": target}
