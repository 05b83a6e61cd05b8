"""Set-to-set matching: which images of set A look like which images of set B.

Seed 004 computed a dense cosine matrix between two sets (13,501 x 21,221)
and kept the pairs above a similarity. Here both sets are embedded (or
taken from saved models), and pairs are found in blocks: at most one
block of distances exists at a time, whatever the sizes of A and B: pairs
within a threshold come from the one range search
(:func:`lookalike.index.exact.pairs_within`), k nearest from B's index, and
every distance is re-measured from the two rows, so a pair's distance is the
same as ``query`` reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.dedup import default_threshold
from lookalike.errors import InvalidArgument
from lookalike.index.exact import pairs_within
from lookalike.references.core import References
from lookalike.store.results import check_output, label_type, write_blocks
from lookalike.validation import check_distance, check_positive_int

__all__ = ["check_comparable", "check_limits", "match_references"]

#: Rows of A queried at a time.
BLOCK_A = 4096


def match_references(
    a: References,
    b: References,
    metric: str,
    threshold: float | None = None,
    k: int | None = None,
    path: str | os.PathLike | None = None,
    one_to_one: bool = False,
) -> pd.DataFrame | Path:
    """Pairs of references of ``a`` and ``b`` within ``threshold`` and/or ``b``'s ``k`` nearest of each, measured
    in ``metric``: what :func:`lookalike.match` returns once it has the two sets (see it for every argument)."""
    threshold, k = check_limits(threshold, k, metric)
    if path is not None:
        path = check_output(path)
    check_comparable(a, b)
    if threshold is None and k is None:
        threshold = _default_threshold(a, metric)
    candidates = _candidate_blocks(a, b, threshold, k, metric, BLOCK_A)
    if one_to_one:
        blocks = iter([_one_to_one_table(a, b, _concat(candidates))])
    else:
        blocks = (_pair_table(a, b, *block) for block in candidates)
    if path is not None:
        write_blocks(path, blocks, _pair_schema(a, b), metric=metric)
        return path
    pairs = pd.concat(blocks, ignore_index=True)
    pairs.attrs["metric"] = metric  # what the distances mean, for whoever shows or writes them
    return pairs


def _candidate_blocks(
    a: References,
    b: References,
    threshold: float | None,
    k: int | None,
    metric: str,
    block_a: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(a positions, b positions, distances)``, one block of A at a time, in the final order (a, distance, b)."""
    if k is not None:
        # b's own index (approximate or exact) when it measures the same metric; exact search otherwise.
        index = b.index if b.metric == metric else b.exact_index(metric)
    for a0 in range(0, len(a.labels), block_a):
        queries = a.embeddings[a0 : a0 + block_a]
        if k is not None:
            distances, positions = index.search(queries, k)
            a_pos = np.repeat(np.arange(a0, a0 + len(positions)), positions.shape[1])
            b_pos, dist = positions.ravel(), distances.ravel()
            if threshold is not None:
                close = dist <= threshold
                a_pos, b_pos, dist = a_pos[close], b_pos[close], dist[close]
        else:
            a_pos, b_pos, dist = _concat(pairs_within(queries, b.embeddings, metric, threshold, block_a))
            order = np.lexsort((b_pos, dist, a_pos))
            a_pos, b_pos, dist = a_pos[order] + a0, b_pos[order], dist[order]
        yield a_pos, b_pos, dist


def _one_to_one_table(
    a: References, b: References, candidates: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> pd.DataFrame:
    """Closest pair first, each image in one pair at most; then the unmatched of a, then of b."""
    a_pos, b_pos, dist = candidates
    order = np.lexsort((b_pos, a_pos, dist))
    a_free = np.ones(len(a.labels), bool)
    b_free = np.ones(len(b.labels), bool)
    taken = []
    for i in order.tolist():
        if a_free[a_pos[i]] and b_free[b_pos[i]]:
            a_free[a_pos[i]] = b_free[b_pos[i]] = False
            taken.append(i)
    taken = np.array(sorted(taken, key=lambda i: (a_pos[i], dist[i])), np.int64)
    pairs = _pair_table(a, b, a_pos[taken], b_pos[taken], dist[taken])
    alone_a = _pair_table(a, b, np.flatnonzero(a_free), None, None)
    alone_b = _pair_table(a, b, None, np.flatnonzero(b_free), None)
    return pd.concat([pairs, alone_a, alone_b], ignore_index=True)


def _pair_table(
    a: References,
    b: References,
    a_pos: np.ndarray | None,
    b_pos: np.ndarray | None,
    dist: np.ndarray | None,
) -> pd.DataFrame:
    """Pairs at these positions; with one side None, that side's images without a partner (distance NaN)."""
    rows = len(a_pos if a_pos is not None else b_pos)

    def side(values: np.ndarray, pos: np.ndarray | None) -> Any:
        return values[pos] if pos is not None else pd.array([None] * rows, dtype=object)

    table = pd.DataFrame(
        {
            "a_label": side(a.labels, a_pos),
            "b_label": side(b.labels, b_pos),
            "distance": dist if dist is not None else np.full(rows, np.nan),
        }
    )
    for name, m, pos in (("a_path", a, a_pos), ("b_path", b, b_pos)):
        if _has_paths(m):
            paths = m.table[m.feature_column]
            table[name] = paths.take(pos).reset_index(drop=True) if pos is not None else side(paths.to_numpy(), None)
    return table


def _has_paths(references: References) -> bool:
    return references.feature_column is not None and references.feature_column in references.table.columns


def _pair_schema(a: References, b: References) -> pa.Schema:
    """The arrow schema of a streamed pairs file (every block has the same columns and types)."""
    fields = [
        ("a_label", label_type(a.labels)),
        ("b_label", label_type(b.labels)),
        ("distance", pa.float64()),
    ]
    fields += [(name, pa.string()) for name, m in (("a_path", a), ("b_path", b)) if _has_paths(m)]
    return pa.schema(fields)


def _concat(parts: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_pos, b_pos, dist = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float64)]
    for i, j, d in parts:
        a_pos.append(i)
        b_pos.append(j)
        dist.append(d)
    return np.concatenate(a_pos), np.concatenate(b_pos), np.concatenate(dist)


def _default_threshold(a: References, metric: str) -> float:
    """The threshold measured for set a's network, descriptor and ``metric`` (dedup's), or a clear error."""
    try:
        if a.metric != metric:
            raise InvalidArgument(f"the thresholds were measured in each model's own metric, not {metric}")
        return default_threshold(a)
    except InvalidArgument as exc:
        raise InvalidArgument(
            "match needs threshold= (the largest distance of a pair) and/or k= (nearest b images per a): "
            f"no default was measured here ({exc})"
        ) from None


def check_limits(threshold: Any, k: Any, metric: str) -> tuple[float | None, int | None]:
    """``threshold`` (a distance in ``metric``) and ``k``, checked; either may be None."""
    if threshold is not None:
        threshold = check_distance("threshold", threshold, metric)
    return threshold, check_positive_int("k", k, none=True)


def check_comparable(a: References, b: References) -> None:
    """Distances between two sets mean something only when one network embedded both."""
    if a.dim != b.dim:
        raise InvalidArgument(
            f"set a has {a.dim}-d embeddings ({a.model_name or 'precomputed'}) and set b {b.dim}-d "
            f"({b.model_name or 'precomputed'}): they cannot be compared"
        )
    ra, rb = a.spec_record, b.spec_record
    if ra is not None and rb is not None and ra.get("fingerprint") != rb.get("fingerprint"):
        raise InvalidArgument(
            f"set a was embedded by {ra['name']!r} (fingerprint {ra.get('fingerprint')}) and set b by "
            f"{rb['name']!r} (fingerprint {rb.get('fingerprint')}): distances between them mean nothing; "
            "embed both with the same network"
        )
