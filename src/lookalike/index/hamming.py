"""Binary codes within a number of differing bits: the range search over copy fingerprints (64-bit codes), and
the two nearest of binary local descriptors (ORB's 256 bits) for matching them.

faiss's binary indexes count the bits two codes differ in with SIMD popcounts;
small sets are scanned flat (exact), large ones through an inverted file.
"""

from __future__ import annotations

import faiss
import numpy as np

__all__ = ["FLAT_CODES", "two_nearest", "within_bits"]

#: Above this many stored codes the search goes through an inverted file (approximate) instead of flat.
FLAT_CODES = 200_000
#: Lists an inverted-file search looks in (of about sqrt(n)).
_PROBES = 16


def _as_bytes(codes: np.ndarray) -> np.ndarray:
    """uint64 codes as the (n, 8) uint8 rows faiss's binary indexes take."""
    return np.ascontiguousarray(codes, dtype="<u8").view(np.uint8).reshape(-1, 8)


def within_bits(stored: np.ndarray, queries: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(query rows, stored positions)`` of every stored 64-bit code at most ``bits`` bits from a query code.

    Examples
    --------
    >>> within_bits(np.array([0b1011, 0], np.uint64), np.array([0b0011], np.uint64), 1)
    (array([0]), array([0]))
    """
    if len(stored) == 0 or len(queries) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = _as_bytes(stored)
    if len(stored) <= FLAT_CODES:
        index = faiss.IndexBinaryFlat(64)
    else:
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, int(np.sqrt(len(stored))))
        index.train(codes)
        index.nprobe = _PROBES
    index.add(codes)
    limits, _, positions = index.range_search(_as_bytes(queries), bits + 1)  # faiss keeps distances below the radius
    rows = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
    return rows, positions.astype(np.int64)


def two_nearest(queries: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row of bytes (a binary descriptor), the bits it differs in from its two nearest stored rows
    and their positions, each (m, 2); position -1 (and the largest distance) where fewer than two are stored.
    Exact, as OpenCV's brute-force Hamming matcher, without a Python object per match (several times faster).

    Examples
    --------
    >>> two_nearest(np.array([[0b1011]], np.uint8), np.array([[0b0011], [0b1111], [0]], np.uint8))
    (array([[1, 1]], dtype=int32), array([[0, 1]]))
    """
    return faiss.knn_hamming(np.ascontiguousarray(queries), np.ascontiguousarray(stored), 2)
