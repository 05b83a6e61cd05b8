"""Pairs of references that may be copies: close embeddings, or close copy fingerprints in any orientation.

Embeddings alone miss copies: a quarter-size, turned or grey copy often lies
farther from its original than the dedup threshold. Each reference's copy
fingerprints (:mod:`lookalike.ingest.fingerprint`, computed at indexing time)
are compared too, in all 8 orientations (:func:`lookalike.index.hamming.within_bits`); pairs
from either source are candidates, and only the tier checks
(:mod:`lookalike.dedup.tiers`) say whether they are copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lookalike.errors import ModelFormatError
from lookalike.index.hamming import within_bits
from lookalike.index.metrics import exact_distances_at
from lookalike.ingest.fingerprint import COMPARED, COMPARED_EITHER_WAY, MATCH_BITS, WINDOWS, orientations
from lookalike.ingest.pixel_facts import PixelFacts
from lookalike.references.core import References
from lookalike.store import bundle
from lookalike.store.storage import Generation

__all__ = [
    "CANDIDATES_VERSION",
    "WINDOW_COLUMNS",
    "Candidates",
    "candidate_pairs",
    "candidates_to_bytes",
    "fingerprints_match",
    "has_fingerprints",
    "remember_saved",
]

#: How far beyond the threshold a picture's nearest neighbour is a candidate copy. A crop of a fifth to a half of a
#: photo lies 1.5 to 1.9 times the default threshold from its original (neardup, default network), and its nearest
#: neighbour is its original or a copy of it (the original is then tried too, see ``groups._attach_to_copies``):
#: at twice the threshold, 0.92 of neardup's crops were found against 0.64 at 1.25 times, for 30 % more candidate
#: pairs. Only the nearest: in a collection of look-alikes (garments) every neighbour out to there would be 12 times
#: the pairs to judge. The pixels decide; look-alikes are listed only within the threshold itself.
COPY_REACH = 2.0
_QUERY_BLOCK = 65_536
#: What the candidate pairs saved beside a model were found by: those of another version are searched again.
CANDIDATES_VERSION = 2
#: The key candidates are held under by the references (see References.derived), with threshold, k and reach.
_DERIVED = "copy candidates"
#: The arrays of a Candidates, as saved.
_ARRAYS = ("pairs", "distance", "bits", "local")


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
    local : numpy.ndarray
        (m,) bool: whether local features may be needed to tell (a pair close in embeddings, or a crop found by
        a window's fingerprint); a pair found by whole fingerprints alone is a copy as they are laid, or none.
    """

    pairs: np.ndarray
    distance: np.ndarray
    bits: np.ndarray
    local: np.ndarray

    def __len__(self) -> int:
        return len(self.pairs)


#: The window fingerprints (of what a reframing crop keeps): a copy cropped so matches one of them.
WINDOW_COLUMNS = tuple(f"fingerprint_{name}" for name in WINDOWS)
#: The columns of :func:`lookalike.ingest.fingerprint.layout`'s fingerprints, and the pairs of them compared.
_LAYOUT_COLUMNS = ("fingerprint", "fingerprint_trimmed", "fingerprint_picture")
WHOLE_MATCHES = tuple((_LAYOUT_COLUMNS[a], _LAYOUT_COLUMNS[b]) for a, b in COMPARED)
_EITHER_WAY = tuple((_LAYOUT_COLUMNS[a], _LAYOUT_COLUMNS[b]) for a, b in COMPARED_EITHER_WAY)


def has_fingerprints(references: References, columns: tuple[str, ...] = ("fingerprint", "fingerprint_trimmed")) -> bool:
    """Whether every reference has these fingerprint columns (models indexed before they existed get them on
    re-index)."""
    table = references.table
    return all(c in table.columns and not table[c].isna().any() for c in columns)


def candidate_pairs(references: References, threshold: float, k: int, copy_reach: float = COPY_REACH) -> Candidates:
    """The candidate pairs of ``references``: each reference's ``k`` nearest within ``threshold`` (in the
    references' metric) and its nearest within ``threshold`` times ``copy_reach``; every pair whose fingerprints lie within :data:`MATCH_BITS` (whole pictures, and what
    lies inside their borders); and every picture whose fingerprint matches a window of another's (a crop).
    Found once while the references are unchanged: a second dedup of one model searches nothing again."""
    return references.derived(
        (_DERIVED, threshold, k, copy_reach), lambda: _searched(references, threshold, k, copy_reach)
    )


def candidates_to_bytes(references: References, saved_as: Generation) -> bytes | None:
    """The ``candidates.npz`` of the candidates found so far (None: none yet), for the references saved as
    ``saved_as``: a model loaded from another save, or changed since, searches again."""
    found = references.derived_of(_DERIVED)
    if not found or saved_as.name is None:
        return None
    arrays, keys = {}, []
    for number, ((_, threshold, k, copy_reach), candidates) in enumerate(found.items()):
        keys.append({"threshold": float(threshold), "k": int(k), "copy_reach": float(copy_reach)})
        for name in _ARRAYS:
            arrays[f"{name}_{number}"] = getattr(candidates, name)
    record = {
        "version": CANDIDATES_VERSION,
        "saved_as": [saved_as.name, saved_as.manifest_sha256],
        "count": len(references),
    }
    return bundle.to_bytes(arrays, {**record, "entries": keys})


def remember_saved(references: References, data: bytes, where: str, saved_as: Generation) -> None:
    """Hold the candidates of a ``candidates.npz`` (what :func:`candidates_to_bytes` wrote) for ``references``,
    loaded from the save ``saved_as``. Those of another save or version are left out; a damaged file raises
    ModelFormatError."""
    arrays, record = bundle.from_bytes(data, where, "list of copy candidates")
    current = [saved_as.name, saved_as.manifest_sha256]
    if record["version"] != CANDIDATES_VERSION or record.get("saved_as") != current or saved_as.name is None:
        return
    entries = record.get("entries")
    if record.get("count") != len(references) or not isinstance(entries, list):
        raise ModelFormatError(f"{where} is damaged: its record does not match the model")
    for number, entry in enumerate(entries):
        try:
            key = (_DERIVED, float(entry["threshold"]), int(entry["k"]), float(entry["copy_reach"]))
            values = [arrays[f"{name}_{number}"] for name in _ARRAYS]
        except (KeyError, TypeError, ValueError):
            raise ModelFormatError(f"{where} is damaged: entry {number} is incomplete") from None
        pairs, distance, bits, local = values
        if (
            pairs.dtype != np.int64
            or pairs.ndim != 2
            or pairs.shape[1:] != (2,)
            or any(v.shape != (len(pairs),) for v in (distance, bits, local))
            or (distance.dtype, bits.dtype, local.dtype) != (np.float64, np.int64, np.bool_)
            or (len(pairs) and (pairs.min() < 0 or pairs.max() >= len(references)))
        ):
            raise ModelFormatError(f"{where} is damaged: entry {number} does not fit the model")
        references.remember(key, _read_only(Candidates(pairs, distance, bits, local)))


def _read_only(found: Candidates) -> Candidates:
    for values in (found.pairs, found.distance, found.bits, found.local):
        values.flags.writeable = False  # shared by every dedup of these references
    return found


def _searched(references: References, threshold: float, k: int, copy_reach: float) -> Candidates:
    # A picture's nearest neighbour is a candidate a little beyond the threshold too (the pixels decide).
    reach = threshold * copy_reach if threshold > 0 else threshold
    local = [_embedding_pairs(references, threshold, k, reach)]
    whole = []
    table = references.table
    owners = np.arange(len(references))
    for queried, stored in WHOLE_MATCHES:  # each query against every stored value: both ways round at once
        if has_fingerprints(references, (queried, stored)):
            whole.append(_fingerprint_pairs(_values(table, queried), _values(table, stored), owners))
    if has_fingerprints(references, ("fingerprint", *WINDOW_COLUMNS)):
        windows = np.concatenate([_values(table, column) for column in WINDOW_COLUMNS])
        owners = np.tile(np.arange(len(references)), len(WINDOW_COLUMNS))
        local.append(_fingerprint_pairs(_values(table, "fingerprint"), windows, owners))
    local_pairs = _distinct(np.concatenate(local))
    pairs = _distinct(np.concatenate([local_pairs, *whole]))
    needs_features = _rows_in(pairs, local_pairs)
    vectors = references.embeddings
    distance = (
        exact_distances_at(references.metric, vectors[pairs[:, 0]], vectors, pairs[:, 1:])[:, 0]
        if len(pairs)
        else np.zeros(0)
    )
    return _read_only(Candidates(pairs, distance, _fewest_bits(references, pairs), needs_features))


def _distinct(pairs: np.ndarray) -> np.ndarray:
    """Pairs as ``(smaller, larger)``, each once, none of a position with itself."""
    pairs = np.unique(np.sort(pairs.reshape(-1, 2), axis=1), axis=0)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def _rows_in(pairs: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Which rows of ``pairs`` are rows of ``among`` (both sorted, distinct)."""
    keys = pairs[:, 0] * (1 << 32) + pairs[:, 1]
    return np.isin(keys, among[:, 0] * (1 << 32) + among[:, 1])


def fingerprints_match(references: References, position: int, facts: PixelFacts) -> bool:
    """Whether a picture with ``facts`` would be a fingerprint candidate of the reference at ``position`` (what
    :func:`candidate_pairs` finds, for one picture that is not a reference: calibration's copies)."""
    table = references.table
    pairs = [(stored, getattr(facts, queried)) for queried, stored in _EITHER_WAY]
    pairs += [(column, facts.fingerprint) for column in WINDOW_COLUMNS]
    for column, value in pairs:
        if column not in table.columns or pd.isna(table[column].iloc[position]):
            continue
        stored = np.array([table[column].iloc[position]], np.int64).view(np.uint64)[0]
        turned = orientations(np.array([value], np.int64).view(np.uint64))[:, 0]
        if int(np.bitwise_count(turned ^ stored).min()) <= MATCH_BITS:
            return True
    return False


def _values(table, column: str) -> np.ndarray:
    return table[column].to_numpy(np.int64).view(np.uint64)


def _embedding_pairs(references: References, threshold: float, k: int, reach: float) -> np.ndarray:
    """Each reference with its ``k`` nearest within ``threshold``, and with its nearest within ``reach``."""
    found = []
    for start, distances, positions in references.neighbour_blocks(k):
        close = distances <= threshold
        close[:, 0] |= distances[:, 0] <= reach
        rows, columns = np.nonzero(close)
        found.append(np.column_stack([rows + start, positions[rows, columns]]))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


def _fingerprint_pairs(queries: np.ndarray, stored: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Pairs ``(query position, owner of a stored fingerprint)`` within MATCH_BITS, the query in any of the 8
    orientations."""
    if len(stored) < 1 or len(queries) < 1:
        return np.zeros((0, 2), np.int64)
    turned = orientations(queries)
    found = []
    for start in range(0, len(queries), _QUERY_BLOCK):
        # The 8 orientations of a block of queries in one search: faiss starts its threads once, not 8 times.
        block = turned[:, start : start + _QUERY_BLOCK]
        rows, positions = within_bits(stored, block.reshape(-1), MATCH_BITS)
        found.append(np.column_stack([rows % block.shape[1] + start, owners[positions]]))
    return np.concatenate(found).astype(np.int64)


def _fewest_bits(references: References, pairs: np.ndarray) -> np.ndarray:
    """For each pair, the fewest fingerprint bits its two references differ in (any orientation, any of
    :data:`WHOLE_MATCHES`, either way round)."""
    fewest = np.full(len(pairs), 64, np.int64)
    if not len(pairs):
        return fewest
    table = references.table
    for first, second in _EITHER_WAY:
        if not has_fingerprints(references, (first, second)):
            continue
        turned = orientations(_values(table, first)[pairs[:, 0]])
        other = _values(table, second)[pairs[:, 1]]
        for variant in turned:
            fewest = np.minimum(fewest, np.bitwise_count(variant ^ other).astype(np.int64))
    return fewest
