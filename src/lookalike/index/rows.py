"""Reference vectors grown or cut by ``add``/``remove``, kept on disk when they came from a file.

``numpy.concatenate`` and ``numpy.delete`` build the new matrix in memory: for ten million memory-mapped
512-d references that is 20 GB of anonymous memory for adding ten rows. Large memory-mapped vectors
are instead copied, a block at a time, into a new file in the cache's ``scratch`` folder, which is
mapped and unlinked at once (:func:`lookalike.store.files.scratch_array`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from lookalike.store import files

#: Rows copied at once.
_BLOCK = 65536


def appended(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors`` followed by ``rows`` (float32)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if not _kept_on_disk(vectors):
        return np.concatenate([vectors, rows])

    def blocks() -> Iterator[np.ndarray]:
        yield from _blocks(vectors, np.arange(len(vectors)))
        yield rows

    return _in_file(len(vectors) + len(rows), vectors.shape[1], blocks)


def without(vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``vectors`` without the rows at ``positions``."""
    if not _kept_on_disk(vectors):
        return np.delete(vectors, positions, axis=0)
    kept = np.delete(np.arange(len(vectors)), positions)
    return _in_file(len(kept), vectors.shape[1], lambda: _blocks(vectors, kept))


def _kept_on_disk(vectors: np.ndarray) -> bool:
    return vectors.nbytes >= files.SCRATCH_BYTES and _memmap_of(vectors) is not None


def _memmap_of(vectors: np.ndarray) -> np.memmap | None:
    """The memory-mapped array ``vectors`` is, or is a view of."""
    base = vectors
    while base is not None and not isinstance(base, np.memmap):
        base = base.base if isinstance(base, np.ndarray) else None
    return base


def _blocks(vectors: np.ndarray, rows: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), _BLOCK):
        chosen = rows[start : start + _BLOCK]
        if len(chosen) and chosen[-1] - chosen[0] == len(chosen) - 1:  # a run of rows: a slice, not a gather
            yield vectors[chosen[0] : chosen[-1] + 1]
        else:
            yield vectors[chosen]


def _in_file(count: int, dim: int, blocks: Callable[[], Iterator[np.ndarray]]) -> np.ndarray:
    out = files.scratch_array((count, dim))
    start = 0
    for block in blocks():
        out[start : start + len(block)] = block
        start += len(block)
    out.flags.writeable = False
    return out


def drop_self(distances: np.ndarray, neighbours: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own position (``start + row``) from its neighbours, or, if absent, its farthest one.

    An approximate index may miss a reference's own vector, and duplicates
    tie with it at distance 0: either way each row keeps one edge fewer.
    """
    rows, width = neighbours.shape
    drop = neighbours == np.arange(start, start + rows)[:, None]
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    return distances[keep].reshape(rows, width - 1), neighbours[keep].reshape(rows, width - 1)
