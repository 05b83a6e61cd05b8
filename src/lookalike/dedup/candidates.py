"""Pairs of references that may be copies: close embeddings, or close copy fingerprints in any orientation.

Embeddings alone miss copies: a quarter-size, turned or grey copy often lies
farther from its original than the dedup threshold. Each reference's copy
fingerprints (:mod:`lookalike.ingest.fingerprint`, computed at indexing time)
are compared too, in all 8 orientations, with faiss's binary index; pairs
from either source are candidates, and only the tier checks
(:mod:`lookalike.dedup.tiers`) say whether they are copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from lookalike.core import References
from lookalike.index.metrics import exact_distances_at
from lookalike.ingest.fingerprint import MATCH_BITS, orientations

__all__ = ["Candidates", "candidate_pairs", "has_fingerprints"]

#: Nearest fingerprints looked at per orientation of each reference: copies of one photo are few.
FINGERPRINT_K = 16
#: Above this many references the fingerprints are searched with an inverted file (approximate) instead of flat.
FLAT_FINGERPRINTS = 200_000
_QUERY_BLOCK = 65_536


@dataclass
class Candidates:
    """Candidate pairs ``(i, j)`` with ``i < j``, each once, with what made them candidates.

    Attributes
    ----------
    pairs : numpy.ndarray
        (m, 2) int64 reference positions.
    distance : numpy.ndarray
        (m,) float64 embedding distance of each pair in the references' metric.
    bits : numpy.ndarray
        (m,) int64 fewest fingerprint bits the pair differs in (any orientation, whole or inside the
        borders); 64 where fingerprints are unknown.
    """

    pairs: np.ndarray
    distance: np.ndarray
    bits: np.ndarray

    def __len__(self) -> int:
        return len(self.pairs)


def has_fingerprints(references: References) -> bool:
    """Whether every reference has copy fingerprints (models indexed before they existed get them on re-index)."""
    table = references.table
    return all(c in table.columns and not table[c].isna().any() for c in ("fingerprint", "fingerprint_trimmed"))


def candidate_pairs(references: References, threshold: float, k: int) -> Candidates:
    """The candidate pairs of ``references``: each reference's ``k`` nearest within ``threshold`` (in the
    references' metric), and every pair whose fingerprints lie within :data:`MATCH_BITS`."""
    found = [_embedding_pairs(references, threshold, k)]
    if has_fingerprints(references):
        for column in ("fingerprint", "fingerprint_trimmed"):
            found.append(_fingerprint_pairs(references.table[column].to_numpy(np.int64).view(np.uint64)))
    pairs = np.concatenate(found)
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    vectors = references.embeddings
    distance = (
        exact_distances_at(references.metric, vectors[pairs[:, 0]], vectors, pairs[:, 1:])[:, 0]
        if len(pairs)
        else np.zeros(0)
    )
    return Candidates(pairs, distance, _fewest_bits(references, pairs))


def _embedding_pairs(references: References, threshold: float, k: int) -> np.ndarray:
    found = []
    for start, distances, positions in references.neighbour_blocks(k):
        rows, columns = np.nonzero(distances <= threshold)
        found.append(np.column_stack([rows + start, positions[rows, columns]]))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


def _as_codes(values: np.ndarray) -> np.ndarray:
    """uint64 fingerprints as the (n, 8) uint8 codes faiss's binary indexes take."""
    return np.ascontiguousarray(values, dtype="<u8").view(np.uint8).reshape(-1, 8)


def _fingerprint_pairs(fingerprints: np.ndarray) -> np.ndarray:
    """Pairs of positions whose fingerprints lie within the radius, one of them in any of the 8 orientations."""
    n = len(fingerprints)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    codes = _as_codes(fingerprints)
    if n <= FLAT_FINGERPRINTS:
        index = faiss.IndexBinaryFlat(64)
    else:
        lists = int(np.sqrt(n))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, lists)
        index.train(codes)
        index.nprobe = 16
    index.add(codes)
    k = min(FINGERPRINT_K, n)
    turned = orientations(fingerprints)
    found = []
    for start in range(0, n, _QUERY_BLOCK):
        # The 8 orientations of a block of references in one search: faiss starts its threads once, not 8 times.
        block = turned[:, start : start + _QUERY_BLOCK]
        bits, positions = index.search(_as_codes(block.reshape(-1)), k)
        rows, columns = np.nonzero((bits <= MATCH_BITS) & (positions >= 0))
        found.append(np.column_stack([rows % block.shape[1] + start, positions[rows, columns]]))
    return np.concatenate(found).astype(np.int64)


def _fewest_bits(references: References, pairs: np.ndarray) -> np.ndarray:
    """For each pair, the fewest fingerprint bits its two references differ in (any orientation, either kind)."""
    if not len(pairs) or not has_fingerprints(references):
        return np.full(len(pairs), 64, np.int64)
    fewest = np.full(len(pairs), 64, np.int64)
    for column in ("fingerprint", "fingerprint_trimmed"):
        values = references.table[column].to_numpy(np.int64).view(np.uint64)
        turned = orientations(values[pairs[:, 0]])
        other = values[pairs[:, 1]]
        for variant in turned:
            fewest = np.minimum(fewest, np.bitwise_count(variant ^ other).astype(np.int64))
    return fewest
