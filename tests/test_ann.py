"""Approximate indexes (faiss HNSW/IVF): same interface and distances as exact search, measured recall, save/load."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest

import lookalike as lk
from conftest import SAMPLES, generation, reseal
from lookalike.cli import main as cli
from lookalike.index import ApproximateIndex, ExactIndex, build_index, choose_method, factory
from lookalike.index.metrics import exact_distances
from lookalike.index.recall import recall_at_k

CASES = [(m, metric) for m in ("hnsw", "ivf", "ivf-sq8", "ivf-pq") for metric in ("euclidean", "cosine", "dot")]
CASES += [("IVF16,Flat", "euclidean"), ("HNSW16", "cosine")]


def clustered(n: int, dim: int = 32, seed: int = 0, centres: int = 40) -> np.ndarray:
    """Vectors in Gaussian clusters, the shape of image embeddings (many groups of look-alikes)."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(99).standard_normal((centres, dim)).astype(np.float32)
    return (middle[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def refs() -> np.ndarray:
    return clustered(2000)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(200, seed=1)


@pytest.mark.parametrize("method, metric", CASES)
def test_same_interface_and_distances_as_exact_search(refs, queries, metric, method):
    exact_d, exact_p = ExactIndex(refs, metric).search(queries, 10)
    index = build_index(refs, metric, method)
    distances, positions = index.search(queries, 10)
    assert distances.dtype == np.float64 and positions.dtype == np.int64
    assert distances.shape == positions.shape == (200, 10) and len(index) == 2000
    # Every returned distance is the exact index's own measure of that pair, in increasing order.
    np.testing.assert_array_equal(distances, exact_distances(metric, queries, refs[positions]))
    assert (np.diff(distances, axis=1) >= 0).all()
    assert all(len(set(row)) == 10 for row in positions.tolist())
    assert recall_at_k(distances, exact_d) >= 0.9
    # Where both found the same reference at the same rank the distances agree exactly.
    same = positions == exact_p
    assert same.mean() > 0.8 and np.array_equal(distances[same], exact_d[same])


def test_metrics_are_distances_as_documented(refs):
    q = refs[:5] + 0.1
    formulas = {
        "euclidean": lambda a, b: np.linalg.norm(a - b),
        "cosine": lambda a, b: 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
        "dot": lambda a, b: -(a @ b),
    }
    for metric, formula in formulas.items():
        distances, positions = build_index(refs, metric, "ivf").search(q, 3)
        want = [
            [formula(q[i].astype(np.float64), refs[p].astype(np.float64)) for p in row]
            for i, row in enumerate(positions)
        ]
        np.testing.assert_allclose(distances, want, rtol=1e-5, atol=1e-5)


def test_effort_is_tuned_until_the_sampled_recall_reaches_the_target(refs):
    index = build_index(refs, "euclidean", "ivf")
    assert index.build.recall["k"] == 10 and index.build.recall["queries"] == 200
    assert index.build.recall["recall"] >= 0.95
    # The measure is honest: the same sample searched with the chosen effort reproduces it, a lower one falls short.
    cheapest = index.efforts()[0]
    if index.search_effort != cheapest:
        q = refs[np.sort(np.random.default_rng(0).choice(2000, 200, replace=False))]
        truth, _ = ExactIndex(refs, "euclidean").search(q, 11)
        low, _ = index.search(q, 11, effort=cheapest)
        assert recall_at_k(low[:, 1:], truth[:, 1:]) < 0.95


def test_k_beyond_the_references_and_tiny_sets():
    vectors = clustered(30, dim=8)
    index = build_index(vectors, "euclidean", "hnsw")
    distances, positions = index.search(vectors[:3], 50)
    assert positions.shape == (3, 30)
    assert sorted(positions[0].tolist()) == list(range(30))
    exact_d, _ = ExactIndex(vectors, "euclidean").search(vectors[:3], 50)
    np.testing.assert_array_equal(distances, exact_d)
    empty_d, empty_p = index.search(np.zeros((0, 8), np.float32), 5)
    assert empty_d.shape == empty_p.shape == (0, 5)


def test_zero_vector_under_cosine_is_at_distance_one(refs):
    index = build_index(refs, "cosine", "hnsw")
    distances, _ = index.search(np.zeros((1, refs.shape[1]), np.float32), 4)
    np.testing.assert_array_equal(distances, np.ones((1, 4)))


def test_auto_is_exact_below_the_threshold_and_approximate_above(refs, monkeypatch):
    assert choose_method("auto", 5000)[0] == "brute_force"
    small = build_index(refs, "euclidean", "auto")
    assert small.method == "brute_force" and "2000 references <" in small.build.reason and small.build.recall is None
    assert choose_method("auto", 49_999, 512)[0] == choose_method("auto", 19_999, 1280)[0] == "brute_force"
    # Above the threshold: IVF with one byte per value, re-ranked from the vectors (never a second full copy)...
    assert choose_method("auto", 50_000, 512)[0] == choose_method("auto", 20_000, 1280)[0] == "ivf-sq8"
    monkeypatch.setattr(factory, "AUTO_MAX_EXACT_VALUES", 1000 * refs.shape[1])
    large = build_index(refs, "euclidean", "auto")
    assert (
        large.method == "ivf-sq8"
        and large.spec.endswith(",SQ8")
        and f">= 1000 of {refs.shape[1]}-d" in large.build.reason
        and large.build.recall["recall"] >= 0.95
    )
    # ...and product-quantised codes once those bytes would pass the budget (10M x 512 would take 4.8 GiB).
    method, reason = choose_method("auto", 10_000_000, 512)
    assert method == "ivf-pq" and "4.8 GiB" in reason
    monkeypatch.setattr(factory, "CODE_BUDGET", 1000 * refs.shape[1])
    compressed = build_index(refs, "euclidean", "auto")
    assert compressed.method == "ivf-pq" and ",PQ" in compressed.spec and compressed.build.recall["recall"] >= 0.95


def test_bad_method_fails_before_any_embedding():
    with pytest.raises(ValueError, match="method must be one of .* got 'annoy'"):
        lk.create(SAMPLES, method="annoy", verbose=False)
    with pytest.raises(ValueError, match="not a faiss index factory string"):
        ApproximateIndex(clustered(100), "euclidean", "HNSW32,Nonsense")


# ------------------------------------------------------------------ real photos, model, save/load


@pytest.fixture(scope="module")
def hnsw_model(sample_model):
    """HNSW over the 80 vendored photos (embeddings from the session cache)."""
    return lk.create(SAMPLES, method="hnsw", verbose=False)


def test_real_photos_same_neighbours_as_exact_model(sample_model, hnsw_model):
    queries = np.asarray(sample_model.embeddings[::4]) * 1.01  # real photo embeddings, slightly off the references
    exact = sample_model.query(queries, k=5)
    approx = hnsw_model.query(queries, k=5)
    found = approx["distance"].to_numpy().reshape(-1, 5)
    truth = exact["distance"].to_numpy().reshape(-1, 5)
    assert recall_at_k(found, truth) >= 0.95
    top = approx["rank"] == 1
    assert (approx[top]["reference_label"].to_numpy() == sample_model.labels[::4]).all()


def test_summary_and_info_report_method_reason_and_recall(hnsw_model, sample_model, tmp_path, capsys):
    summary = hnsw_model.summary(output="dict")
    assert summary["method"] == "hnsw" and summary["method_reason"] == "requested"
    assert summary["recall"]["k"] == 10 and summary["recall"]["recall"] >= 0.95
    assert "recall" in hnsw_model.summary(output="str")
    exact = sample_model.summary(output="dict")
    assert exact["method"] == "brute_force" and exact["method_reason"].startswith("auto: 80 references")
    hnsw_model.save(tmp_path / "m")
    assert cli(["info", str(tmp_path / "m"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "hnsw" and info["recall"] == summary["recall"]


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_save_load_roundtrip_answers_identically(tmp_path, refs, queries, method):
    model = lk.create(refs, model=None, metric="cosine", method=method)
    model.save(tmp_path / "m")
    files = sorted(p.name for p in generation(tmp_path / "m").iterdir())
    assert "index.faiss" in files and "index_ids.npy" in files
    loaded = lk.load_model(tmp_path / "m")
    assert loaded.summary(output="dict")["recall"] == model.summary(output="dict")["recall"]
    assert loaded.core.index.search_effort == model.core.index.search_effort
    assert loaded.query(queries, k=7).equals(model.query(queries, k=7))
    # The loaded (memory-mapped) index still grows and shrinks.
    loaded.add(queries[:5])
    loaded.remove([0, 1])
    assert len(loaded.core.index) == len(loaded.labels) == 2003


def test_saved_real_model_answers_identically(tmp_path, hnsw_model):
    hnsw_model.save(tmp_path / "m")
    loaded = lk.load_model(tmp_path / "m")
    queries = np.asarray(hnsw_model.embeddings[::3]) + 0.5
    assert loaded.query(queries, k=4).equals(hnsw_model.query(queries, k=4))
    assert (generation(tmp_path / "m") / "index.faiss").read_bytes()[:4] == b"IHNf"  # faiss's own format, not a pickle


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "index.faiss").write_bytes((d / "index.faiss").read_bytes()[:500]), "index.faiss is damaged"),
        (lambda d: (d / "index.faiss").write_bytes(b"not an index at all"), "index.faiss is damaged"),
        (lambda d: (d / "index.faiss").unlink(), "is damaged: missing index.faiss"),
        (lambda d: np.save(d / "index_ids.npy", np.arange(5)), "but the model has"),
        (lambda d: (d / "index_ids.npy").write_bytes(b"junk"), "index_ids.npy is damaged"),
    ],
)
def test_damaged_index_file_is_a_clear_format_error(tmp_path, refs, damage, message):
    model = lk.create(refs[:500], model=None, method="hnsw")
    model.save(tmp_path / "good")
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    damage(generation(tmp_path / "bad"))
    reseal(tmp_path / "bad")  # past the checksums, to the checks of the files' contents
    with pytest.raises(lk.ModelFormatError, match=message):
        lk.load_model(tmp_path / "bad")


def test_index_from_another_model_is_refused(tmp_path, refs):
    lk.create(refs[:500], model=None, method="hnsw").save(tmp_path / "a")
    lk.create(refs[:600], model=None, method="hnsw").save(tmp_path / "b")
    for name in ("index.faiss", "index_ids.npy"):
        shutil.copy(generation(tmp_path / "b") / name, generation(tmp_path / "a") / name)
    with pytest.raises(lk.ModelFormatError, match="index_ids.npy is damaged: it holds"):
        lk.load_model(tmp_path / "a")
    reseal(tmp_path / "a")
    with pytest.raises(lk.ModelFormatError, match="holds 600 vectors"):
        lk.load_model(tmp_path / "a")


def test_expert_factory_string(tmp_path, refs, queries):
    model = lk.create(refs, model=None, method="IVF32,SQ8")
    assert model.summary(output="dict")["method"] == "IVF32,SQ8"
    assert isinstance(faiss.downcast_index(model.core.index._index), faiss.IndexIVFScalarQuantizer)
    model.save(tmp_path / "m")
    assert lk.load_model(tmp_path / "m").query(queries, k=3).equals(model.query(queries, k=3))


def test_factory_strings_are_checked_at_the_real_dimension():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2_000, 384)).astype(np.float32)
    # 384 is a multiple of 48: PQ48 is valid here (it was refused when checked at d=64).
    model = lk.create(vectors, model=None, method="IVF16,PQ48")
    assert model.summary(output="dict")["method"] == "IVF16,PQ48"
    assert model.core.index.build.requested == "IVF16,PQ48" and model.core.index.build.recall["recall"] > 0
    with pytest.raises(ValueError, match=r"factory string valid for 500-d vectors .*got 'IVF16,PQ48'"):
        lk.create(rng.normal(size=(200, 500)).astype(np.float32), model=None, method="IVF16,PQ48")
    # With a network the check runs before any image is embedded: 1280 is no multiple of 48.
    with pytest.raises(ValueError, match="valid for 1280-d"):
        lk.create(["/nonexistent/never-read.jpg"], method="IVF16,PQ48")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_range_search_finds_what_exact_range_search_finds(refs, queries, metric, method):
    exact = ExactIndex(refs, metric)
    approximate = build_index(refs, metric, method)
    threshold = float(np.quantile(exact.search(queries, 60)[0], 0.5))  # dozens per query, more than the first 32
    lims, distances, positions = approximate.range_search(queries, threshold)
    exact_lims, exact_d, exact_p = exact.range_search(queries, threshold)
    assert (np.diff(exact_lims) > 32).any()  # some queries need the search widened
    found = {(i, p) for i in range(len(queries)) for p in positions[lims[i] : lims[i + 1]]}
    truth = {(i, p) for i in range(len(queries)) for p in exact_p[exact_lims[i] : exact_lims[i + 1]]}
    assert found <= truth and len(found) >= 0.95 * len(truth)  # never a false one; recall as the index's
    assert (distances <= threshold).all() and all(
        (np.diff(distances[a:b]) >= 0).all() for a, b in zip(lims[:-1], lims[1:], strict=True)
    )
