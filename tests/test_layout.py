"""The map of a collection (lookalike.explore.layout): t-SNE keeps neighbourhoods, it is deterministic, saved beside the
model, and a map that no longer covers the references is computed again, never shown wrongly."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import zipfile

import faiss
import numpy as np
import pytest

import lookalike as lk
from lookalike.cli import main as cli_main
from lookalike.errors import InvalidArgument, MissingExtra
from lookalike.explore import layout
from lookalike.explore.layout import MAP_FILE, MapLayout, nearest_neighbours
from lookalike.store import storage


def clustered(n: int, dim: int = 64, clusters: int = 8, intrinsic: int = 4, seed: int = 0) -> np.ndarray:
    """Vectors in ``clusters`` groups, each spread along ``intrinsic`` random directions, plus a little noise:
    what makes neighbours is the position along those directions, which a good map must keep."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    groups = rng.integers(0, clusters, n)
    bases = rng.normal(size=(clusters, intrinsic, dim)) * 0.4
    spread = np.einsum("ni,nid->nd", rng.normal(size=(n, intrinsic)), bases[groups])
    return (centres[groups] + spread + 0.05 * rng.normal(size=(n, dim))).astype(np.float32)


def preserved(model: lk.ImageSimilarityModel, coordinates: np.ndarray, k: int = 10) -> float:
    """The mean share of each reference's k nearest neighbours (in the model) among its k nearest on the map."""
    _, high = nearest_neighbours(model.core, k)
    flat = faiss.IndexFlatL2(2)
    points = np.ascontiguousarray(coordinates, dtype=np.float32)
    flat.add(points)
    _, low = flat.search(points, k + 1)
    return float(
        np.mean([len(set(h) & set(row[row != i][:k])) / k for i, (h, row) in enumerate(zip(high, low, strict=True))])
    )


@pytest.fixture(scope="module")
def vectors_model() -> lk.ImageSimilarityModel:
    return lk.create(clustered(600), model=None, verbose=False)


@pytest.fixture
def photos(sample_model) -> lk.ImageSimilarityModel:
    """The session's sample model with a map of its own (the session's object stays without one)."""
    model = copy.copy(sample_model)
    model.map = None
    return model


# ---------------------------------------------------------------------------------------------- what it shows


def test_tsne_keeps_neighbours_that_pca_loses(vectors_model):
    vectors_model.map = None
    pca = vectors_model.compute_map("pca", verbose=False)
    tsne = vectors_model.compute_map("tsne", verbose=False)
    assert pca.method == "pca" and tsne.method == "tsne"
    kept_pca, kept_tsne = preserved(vectors_model, pca.coordinates), preserved(vectors_model, tsne.coordinates)
    # Measured: t-SNE 0.67, PCA 0.34 of each point's 10 nearest neighbours.
    assert kept_tsne > 0.55 and kept_tsne > 1.6 * kept_pca, (kept_tsne, kept_pca)
    assert tsne.coordinates.shape == (600, 2) and tsne.coordinates.dtype == np.float32
    assert tsne.explained is None and pca.explained is not None


def test_on_the_sample_photos_too(photos):
    pca = layout.compute(photos.core, "pca")
    tsne = photos.compute_map("auto", verbose=False)
    assert tsne.method == "tsne" and tsne.note == ""
    # Measured: t-SNE 0.51, PCA 0.35 on the 80 photos of 10 kinds of clothes.
    assert preserved(photos, tsne.coordinates) > preserved(photos, pca.coordinates) + 0.1


def test_the_same_references_give_the_same_map():
    references = lk.create(clustered(200, seed=2), model=None, verbose=False).core
    first = layout.compute(references, "tsne")
    again = layout.compute(references, "tsne")
    np.testing.assert_array_equal(first.coordinates, again.coordinates)
    np.testing.assert_array_equal(first.clusters, again.clusters)
    assert first.fingerprint == again.fingerprint


def test_pca_is_the_first_two_principal_axes(photos):
    result = photos.compute_map("pca", verbose=False)
    centred = photos.embeddings.astype(np.float64) - photos.embeddings.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ axes[:2].T
    np.testing.assert_allclose(np.abs(result.coordinates), np.abs(expected), atol=1e-3 * np.abs(expected).max())
    np.testing.assert_allclose(result.explained, singular[:2] ** 2 / (singular**2).sum(), rtol=1e-4)
    assert result.note == ""


def test_clusters_are_numbered_by_size(vectors_model):
    result = layout.compute(vectors_model.core, "pca")
    sizes = np.bincount(result.clusters)
    assert result.cluster_count == round(np.sqrt(600 / 2)) == len(sizes)  # k = sqrt(n / 2)
    assert (np.diff(sizes) <= 0).all() and sizes.min() > 0
    assert layout.clusters_of(np.zeros((0, 4), np.float32), "euclidean").shape == (0,)
    big = np.random.default_rng(1).normal(size=(20_000, 8)).astype(np.float32)
    assert layout.clusters_of(big, "euclidean").max() + 1 == layout.MAX_CLUSTERS


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_every_metric_and_an_approximate_index(metric):
    vectors = clustered(600, seed=3)
    if metric == "dot":
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # inner products rank as distances then
    model = lk.create(vectors, model=None, metric=metric, verbose=False)
    approximate = lk.create(vectors, model=None, metric=metric, method="hnsw", verbose=False)
    assert approximate.core.index.method != "brute_force"
    for which in (model, approximate):
        result = which.compute_map("tsne", verbose=False)
        assert np.isfinite(result.coordinates).all()
        assert preserved(model, result.coordinates) > 0.5


def test_too_few_references_for_tsne():
    model = lk.create(clustered(3), model=None, verbose=False)
    assert model.compute_map(verbose=False).method == "pca"  # auto: nothing to lay out
    with pytest.raises(InvalidArgument, match="at least 4 references"):
        model.compute_map("tsne", verbose=False)
    with pytest.raises(InvalidArgument, match="method must be one of"):
        model.compute_map("umap", verbose=False)


def test_auto_uses_pca_above_the_tsne_limit_and_says_how_to_get_tsne(vectors_model):
    vectors_model.map = None
    result = vectors_model.compute_map(verbose=False, tsne_limit=100)
    assert result.method == "pca" and "lookalike map MODEL" in result.note
    # A t-SNE map computed once is kept whatever the limit.
    tsne = vectors_model.compute_map("tsne", verbose=False)
    assert vectors_model.compute_map(verbose=False, tsne_limit=100) is tsne


def test_without_the_map_extra_auto_says_how_to_install_it(tmp_path):
    # A child process where openTSNE cannot be imported, as on a machine without lookalike[map].
    script = """
import sys
sys.modules["openTSNE"] = None
import numpy as np, lookalike as lk
from lookalike.errors import MissingExtra
model = lk.create(np.random.default_rng(0).normal(size=(50, 8)).astype("float32"), model=None, verbose=False)
result = model.compute_map(verbose=False)
print(result.method, "|", result.note)
try:
    model.compute_map("tsne", verbose=False)
except MissingExtra as exc:
    print("refused:", exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pca | PCA, which keeps little of what is near what: for a t-SNE map, pip install 'lookalike[map]'" in (
        out.stdout
    )
    assert "refused: a t-SNE map needs openTSNE, which is not installed: pip install 'lookalike[map]'" in out.stdout
    assert issubclass(MissingExtra, ModuleNotFoundError)


# ---------------------------------------------------------------------------------------------- saved and stale


def test_saved_beside_the_model_and_reused(tmp_path, vectors_model):
    vectors_model.map = None
    computed = vectors_model.compute_map("tsne", verbose=False)
    path = tmp_path / "model.lookalike"
    vectors_model.save(path)
    assert (path / MAP_FILE).is_file() and not list(path.glob(".*partial"))
    loaded = lk.load_model(path)
    assert loaded.map is not None and loaded.map.saved and not computed.saved
    np.testing.assert_array_equal(loaded.map.coordinates, computed.coordinates)
    np.testing.assert_array_equal(loaded.map.clusters, computed.clusters)
    assert (loaded.map.method, loaded.map.fingerprint) == ("tsne", computed.fingerprint)
    assert loaded.compute_map(verbose=False) is loaded.map  # auto takes the saved t-SNE map
    assert loaded.compute_map("pca", verbose=False).method == "pca"  # another method is computed
    # The file is plain arrays and a JSON record: numpy reads it without pickle.
    with np.load(path / MAP_FILE, allow_pickle=False) as arrays:
        assert json.loads(str(arrays["record"]))["count"] == 600


def test_a_map_that_no_longer_covers_the_references_is_computed_again(tmp_path):
    vectors = clustered(300, seed=5)
    model = lk.create(vectors[:250], model=None, verbose=False)
    path = tmp_path / "model.lookalike"
    first = model.compute_map("tsne", verbose=False)
    model.save(path)

    model = lk.load_model(path)
    model.remove([0, 1])
    assert not model.map.covers(model.core)
    after_remove = model.compute_map(verbose=False)
    assert after_remove is not first and not after_remove.saved and len(after_remove) == 248
    model.add(vectors[250:], verbose=False)
    assert not after_remove.covers(model.core)
    after_add = model.compute_map(verbose=False)
    assert len(after_add) == 298 and after_add.covers(model.core)

    # Saved with a map of the old references beside it: a load keeps it, a use sees it is stale.
    storage_folder = tmp_path / "stale.lookalike"
    model.save(storage_folder)
    first.save(storage_folder)
    stale = lk.load_model(storage_folder)
    assert stale.map.saved and not stale.map.covers(stale.core)
    assert len(stale.compute_map(verbose=False)) == 298

    # Same count, other vectors (a re-embedded file): the digest tells them apart.
    changed = vectors[:250].copy()
    changed[7] += 0.5
    assert not first.covers(lk.create(changed, model=None, verbose=False).core)


def test_save_map_writes_only_the_map(tmp_path, vectors_model):
    path = tmp_path / "model.lookalike"
    vectors_model.map = None
    vectors_model.save(path)
    generation = json.loads((path / "CURRENT").read_text())["generation"]
    with pytest.raises(InvalidArgument, match="compute_map"):
        vectors_model.save_map(path)
    vectors_model.compute_map("pca", verbose=False)
    vectors_model.save_map(path)
    assert json.loads((path / "CURRENT").read_text())["generation"] == generation  # no new generation
    assert lk.load_model(path).map.method == "pca"
    with pytest.raises(InvalidArgument, match="not a saved lookalike model"):
        vectors_model.save_map(tmp_path)
    # A later save of the model keeps the map beside its new generation.
    vectors_model.save(path)
    assert storage.read_side_file(path, MAP_FILE) is not None


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_a_damaged_map_is_reported_and_computed_again(tmp_path, vectors_model):
    path = tmp_path / "model.lookalike"
    vectors_model.map = None
    vectors_model.compute_map("pca", verbose=False)
    vectors_model.save(path)
    good = (path / MAP_FILE).read_bytes()
    record = json.dumps({**vectors_model.map.record()})
    coordinates = vectors_model.map.coordinates
    clusters = vectors_model.map.clusters
    compressed = io.BytesIO()
    np.savez_compressed(compressed, coordinates=coordinates, clusters=clusters, record=np.array(record))
    damaged = {
        "truncated": good[: len(good) // 2],
        "not a zip": b"\x93NUMPY" + b"\0" * 100,
        "pickled record": npz(coordinates=coordinates, clusters=clusters, record=np.array([{"a": 1}], dtype=object)),
        "compressed": compressed.getvalue(),
        "short": npz(coordinates=coordinates[:5], clusters=clusters, record=np.array(record)),
        "newer": npz(
            coordinates=coordinates,
            clusters=clusters,
            record=np.array(json.dumps({**json.loads(record), "version": 99})),
        ),
    }
    for name, data in damaged.items():
        (path / MAP_FILE).write_bytes(data)
        with pytest.warns(RuntimeWarning, match="map will be computed again"):
            model = lk.load_model(path)
        assert model.map is None, name
        assert model.compute_map("pca", verbose=False).covers(model.core)
    with pytest.raises(storage.ModelFormatError, match="not a map lookalike wrote"):
        MapLayout.from_bytes(
            npz(coordinates=coordinates, clusters=clusters, record=np.array(record), extra=clusters), "x"
        )
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        assert all(m.compress_type == zipfile.ZIP_STORED for m in archive.infolist())


def test_cli_map_computes_saves_and_reuses(tmp_path, capsys):
    path = tmp_path / "model.lookalike"
    lk.create(clustered(200, seed=7), model=None, verbose=False).save(path)
    assert cli_main(["map", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("t-SNE map of 200 references, 10 clusters, in ") and str(path / MAP_FILE) in out
    assert cli_main(["map", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["method"] == "tsne" and record["reused"] and record["count"] == 200 and record["clusters"] == 10
    assert cli_main(["map", str(path), "--method", "pca", "-q"]) == 0
    assert capsys.readouterr().out.startswith("PCA map of 200 references")
    assert lk.load_model(path).map.method == "pca"
