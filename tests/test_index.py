"""Exact search against a brute-force numpy reference, for every metric, with ties and several blocks."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.index import METRICS, ExactIndex, check_metric
from lookalike.index import exact as exact_module

# Distances are measured in float32 from the two rows themselves (faiss's SIMD kernels, no expansion of a
# matrix product): within float32 resolution of the float64 definition, and exactly 0 for identical rows.
FLOAT32_RESOLUTION = {"rtol": 2e-6, "atol": 2e-6}


def brute_force(refs: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """All pairwise distances in float64, ordered by (distance, position): the definition of the answer."""
    r = refs.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "euclidean":
        d = np.linalg.norm(q[:, None, :] - r[None, :, :], axis=-1)
    elif metric == "cosine":
        norms = np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(r, axis=1)[None, :]
        d = 1.0 - (q @ r.T) / norms
    else:
        d = -(q @ r.T)
    positions = np.arange(len(r))
    order = np.array([np.lexsort((positions, row))[:k] for row in d])
    return np.take_along_axis(d, order, 1), order


def random_data(n: int, m: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(m, dim)).astype(np.float32)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n, m, dim, k", [(300, 40, 16, 7), (50, 10, 512, 5), (20, 3, 4, 20), (5, 2, 3, 1)])
def test_matches_brute_force(metric, n, m, dim, k):
    refs, queries = random_data(n, m, dim, seed=n + dim)
    distances, positions = ExactIndex(refs, metric).search(queries, k)
    expected_d, expected_p = brute_force(refs, queries, k, metric)
    assert positions.dtype == np.int64 and distances.dtype == np.float64
    assert positions.shape == distances.shape == (m, min(k, n))
    np.testing.assert_array_equal(positions, expected_p)
    np.testing.assert_allclose(distances, expected_d, **FLOAT32_RESOLUTION)


@pytest.mark.parametrize("metric", METRICS)
def test_several_query_blocks(metric, monkeypatch):
    refs, queries = random_data(200, 37, 8, seed=3)
    whole = ExactIndex(refs, metric).search(queries, 6)
    monkeypatch.setattr(exact_module, "BLOCK_FLOATS", 1000)  # a handful of queries per block
    blocked = ExactIndex(refs, metric).search(queries, 6)
    expected_d, expected_p = brute_force(refs, queries, 6, metric)
    for distances, positions in (whole, blocked):
        np.testing.assert_array_equal(positions, expected_p)
        np.testing.assert_allclose(distances, expected_d, **FLOAT32_RESOLUTION)


def test_several_reference_blocks():
    # References are taken 65,536 at a time: 150,000 of them span three blocks.
    refs, queries = random_data(150_000, 6, 4, seed=5)
    queries[0] = refs[140_000]  # exact matches in the last block...
    queries[1] = refs[3]  # ...and in the first
    for metric in METRICS:
        distances, positions = ExactIndex(refs, metric).search(queries, 4)
        expected_d, expected_p = brute_force(refs, queries, 4, metric)
        np.testing.assert_array_equal(positions, expected_p)
        np.testing.assert_allclose(distances, expected_d, **FLOAT32_RESOLUTION)
    distances, positions = ExactIndex(refs, "euclidean").search(queries[:2], 1)
    assert positions[:, 0].tolist() == [140_000, 3]
    assert distances[:, 0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_ties_are_ordered_by_position(metric):
    refs, _ = random_data(60, 0, 8, seed=7)
    refs[[41, 7, 23, 55]] = refs[12]  # five copies of one vector
    distances, positions = ExactIndex(refs, metric).search(refs[[55, 12]], 7)
    for row in range(2):
        assert positions[row, :5].tolist() == [7, 12, 23, 41, 55]
        assert np.abs(distances[row, :5]).max() < 1e-12  # cosine of identical float vectors: 1 - (1 - eps)
        assert distances[row, 5] > 0
    np.testing.assert_array_equal(positions, brute_force(refs, refs[[55, 12]], 7, metric)[1])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n_refs", [500, 150_000])
def test_many_ties_keep_the_lowest_positions(metric, n_refs):
    """More tied references than the candidate margin: the lowest positions must still win."""
    rng = np.random.default_rng(11)
    refs = rng.normal(size=(n_refs, 6)).astype(np.float32)
    copies = np.sort(rng.choice(n_refs, size=100, replace=False))
    refs[copies] = refs[copies[-1]]
    query = refs[copies[-1]][None] * (3.0 if metric == "dot" else 1.0)
    distances, positions = ExactIndex(refs, metric).search(query, 5)
    expected_d, expected_p = brute_force(refs, query, 5, metric)
    if metric != "dot":
        assert positions[0].tolist() == copies[:5].tolist()
    np.testing.assert_array_equal(positions, expected_p)
    np.testing.assert_allclose(distances, expected_d, **FLOAT32_RESOLUTION)


def test_zero_query_under_cosine_ties_everything():
    refs, _ = random_data(100, 0, 5, seed=2)
    distances, positions = ExactIndex(refs, "cosine").search(np.zeros((1, 5), np.float32), 3)
    assert positions[0].tolist() == [0, 1, 2]
    assert distances[0].tolist() == [1.0, 1.0, 1.0]


def test_results_are_deterministic():
    refs, queries = random_data(1000, 20, 12, seed=9)
    refs[500:600] = refs[0]
    index = ExactIndex(refs, "euclidean")
    first = index.search(queries, 10)
    for _ in range(3):
        again = ExactIndex(refs.copy(), "euclidean").search(queries.copy(), 10)
        np.testing.assert_array_equal(again[1], first[1])
        np.testing.assert_array_equal(again[0], first[0])


def test_k_larger_than_references_and_empty_inputs():
    refs, queries = random_data(4, 2, 3, seed=1)
    distances, positions = ExactIndex(refs, "euclidean").search(queries, 10)
    assert positions.shape == (2, 4)
    assert sorted(positions[0].tolist()) == [0, 1, 2, 3]
    assert np.all(np.diff(distances, axis=1) >= 0)
    assert ExactIndex(refs, "euclidean").search(queries[:0], 3)[1].shape == (0, 3)
    assert ExactIndex(refs[:0], "euclidean").search(queries, 3)[1].shape == (2, 0)


def test_reference_vectors_are_not_copied():
    refs, _ = random_data(10, 0, 3, seed=4)
    assert ExactIndex(refs, "dot").vectors is refs


def test_unknown_metric():
    with pytest.raises(ValueError, match="manhattan"):
        check_metric("manhattan")
    with pytest.raises(ValueError, match="metric must be one of"):
        ExactIndex(np.zeros((2, 2), np.float32), "manhattan")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_identical_vectors_are_exactly_zero_apart(metric):
    refs = np.random.default_rng(3).normal(size=(50, 64)).astype(np.float32) * 37.0
    distances, positions = ExactIndex(refs, metric).search(refs, 1)
    assert (positions[:, 0] == np.arange(50)).all()
    assert (distances[:, 0] == 0.0).all()  # radius=0 must find exact duplicates


@pytest.mark.parametrize("metric", METRICS)
def test_range_search_finds_every_reference_within_the_threshold(metric, monkeypatch):
    monkeypatch.setattr(exact_module, "RANGE_BLOCK_B", 64)  # several reference blocks
    refs, queries = random_data(300, 25, 16, seed=7)
    full_d, full_p = brute_force(refs, queries, len(refs), metric)
    threshold = float(np.quantile(full_d[:, :40], 0.5))  # a few to a few dozen per query
    lims, distances, positions = ExactIndex(refs, metric).range_search(queries, threshold)
    assert lims.shape == (len(queries) + 1,) and lims[0] == 0 and lims[-1] == len(positions) == len(distances)
    for i in range(len(queries)):
        expected = full_d[i] <= threshold
        np.testing.assert_array_equal(positions[lims[i] : lims[i + 1]], full_p[i][expected])
        np.testing.assert_allclose(distances[lims[i] : lims[i + 1]], full_d[i][expected], **FLOAT32_RESOLUTION)


def test_range_search_keeps_the_nearest_when_a_query_has_too_many():
    refs, queries = random_data(200, 6, 8, seed=3)
    index = ExactIndex(refs, "euclidean")
    lims, distances, positions = index.range_search(queries, threshold=1e9, max_per_query=10)
    assert (np.diff(lims) == 10).all()
    nearest_d, nearest_p = index.search(queries, 10)
    np.testing.assert_array_equal(positions.reshape(6, 10), nearest_p)
    np.testing.assert_array_equal(distances.reshape(6, 10), nearest_d)
    empty = index.range_search(queries, threshold=-1.0)
    assert (empty[0] == 0).all() and len(empty[2]) == 0


def test_codes_within_bits_are_every_stored_code_that_close():
    from lookalike.index.hamming import within_bits

    rng = np.random.default_rng(5)
    stored = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, n, replace=False))) for n in (0, 3, 10, 11, 30)]
    queries = stored[[7, 8, 9, 10, 11]] ^ np.array(flips, np.uint64)
    rows, positions = within_bits(stored, queries, 10)
    differing = np.array([[bin(int(q) ^ int(s)).count("1") for s in stored] for q in queries])
    expected = np.argwhere(differing <= 10)
    assert sorted(zip(rows.tolist(), positions.tolist(), strict=True)) == sorted(map(tuple, expected.tolist()))
    assert {(0, 7), (1, 8), (2, 9)} <= set(zip(rows.tolist(), positions.tolist(), strict=True))
    assert (3, 10) not in set(zip(rows.tolist(), positions.tolist(), strict=True))
