"""Incremental updates: model.add / model.remove and `lookalike index` on an existing model equal a fresh build."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lookalike as lk
from conftest import SAMPLES, manifest_of
from lookalike.cli import main as cli
from lookalike.index import ExactIndex, build_index
from lookalike.index.metrics import exact_distances
from lookalike.index.recall import recall_at_k

PATHS = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
NAMES = [p.split("/")[-2] + "/" + p.split("/")[-1][:8] for p in PATHS]


def table(rows) -> pd.DataFrame:
    return pd.DataFrame({"path": [PATHS[i] for i in rows], "name": [NAMES[i] for i in rows]})


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(99).standard_normal((40, dim)).astype(np.float32)
    return (middle[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def by_name(results: pd.DataFrame) -> pd.DataFrame:
    return results.sort_values(["query_label", "rank"]).reset_index(drop=True)


def test_add_then_remove_equals_a_fresh_build_on_real_photos(sample_model):
    model = lk.create(table(range(60)), label="name", verbose=False)
    model.add(table(range(60, 80)), verbose=False)
    assert model.build_stats["added"] == 20 and model.build_stats["from_cache"] == 20  # the cache, not the network
    gone = [NAMES[i] for i in range(0, 80, 8)]
    model.remove(gone)
    final = [i for i in range(80) if NAMES[i] not in gone]
    fresh = lk.create(table(final), label="name", verbose=False)
    assert sorted(model.labels.tolist()) == sorted(fresh.labels.tolist()) and len(model.core.index) == 70
    queries = pd.DataFrame({"name": NAMES, "vector": list(np.asarray(sample_model.embeddings))})
    ours = model.query(np.asarray(sample_model.embeddings), k=6)
    theirs = fresh.query(np.asarray(sample_model.embeddings), k=6)
    # Exact search: the very same neighbours, distances and ranks (labels identify references in both).
    pd.testing.assert_frame_equal(by_name(ours), by_name(theirs))
    assert not set(ours["reference_label"]) & set(gone)
    assert set(model.references["name"]) == set(fresh.references["name"]) and len(queries) == 80


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_ann_after_add_remove_matches_fresh_exact_search(method, metric):
    vectors = clustered(3000)
    model = lk.create(vectors[:2000], model=None, metric=metric, method=method)
    model.add(vectors[2000:])
    model.remove(np.arange(0, 3000, 4))
    keep = np.setdiff1d(np.arange(3000), np.arange(0, 3000, 4))
    np.testing.assert_array_equal(model.labels, keep)  # row-number labels continue past the first build
    np.testing.assert_array_equal(model.embeddings, vectors[keep])
    queries = clustered(200, seed=5)
    truth, _ = ExactIndex(vectors[keep], metric).search(queries, 10)
    results = model.query(queries, k=10)
    # Tuned to 0.95 on a sample of references; held-out queries land near it.
    assert recall_at_k(results["distance"].to_numpy().reshape(200, 10), truth) >= 0.9
    assert not set(results["reference_label"]) & set(range(0, 3000, 4))  # removed never come back
    assert model.summary(output="dict")["recall"]["recall"] >= 0.95  # re-measured on the new set
    # Labels still name the right vectors: each reported distance is that of the labelled vector.
    found = results["reference_label"].to_numpy().reshape(200, 10)
    np.testing.assert_array_equal(
        results["distance"].to_numpy().reshape(200, 10), exact_distances(metric, queries, vectors[found])
    )


def test_hnsw_tombstones_are_saved_and_compacted(tmp_path):
    vectors = clustered(2000)
    model = lk.create(vectors, model=None, method="hnsw")
    model.remove(np.arange(0, 600))
    assert model.core.index.record()["tombstones"] == 600  # HNSW cannot drop nodes: skipped at search time
    model.save(tmp_path / "m")
    loaded = lk.load_model(tmp_path / "m")
    queries = clustered(50, seed=7)
    assert loaded.query(queries, k=5).equals(model.query(queries, k=5))
    assert loaded.query(vectors[:600], k=3)["reference_label"].min() >= 600
    model.remove(np.arange(600, 1500))  # tombstones now outnumber live vectors: the graph is rebuilt
    assert model.core.index.record()["tombstones"] == 0 and len(model.core.index) == 500
    distances, positions = model.core.index.search(vectors[1500:1510], 1)
    np.testing.assert_array_equal(positions[:, 0], np.arange(10))
    np.testing.assert_array_equal(distances, 0)


def test_auto_index_follows_the_collection_size_across_add_save_and_remove(tmp_path, monkeypatch):
    from lookalike.index import factory

    vectors = clustered(2000)
    monkeypatch.setattr(factory, "AUTO_MAX_EXACT_VALUES", 1500 * vectors.shape[1])
    grown = lk.create(vectors[:1000], model=None)
    pinned = lk.create(vectors[:1000], model=None, method="brute_force")
    assert grown.core.index.method == pinned.core.index.method == "brute_force"
    grown.add(vectors[1000:])
    pinned.add(vectors[1000:])
    # auto re-chooses once add crosses the threshold; an explicit method is kept whatever the size.
    assert grown.core.index.method == "ivf-sq8" and grown.summary(output="dict")["recall"]["recall"] >= 0.95
    assert pinned.core.index.method == "brute_force"
    grown.save(tmp_path / "m")
    loaded = lk.load_model(tmp_path / "m")
    assert loaded.core.index.method == "ivf-sq8"
    loaded.remove(np.arange(1000))  # back under the threshold: exact again, answers exact
    assert loaded.core.index.method == "brute_force"
    queries = clustered(30, seed=3)
    expected = ExactIndex(vectors[1000:], "euclidean").search(queries, 5)
    got = loaded.query(queries, k=5)
    np.testing.assert_array_equal(got["distance"].to_numpy().reshape(30, 5), expected[0])
    np.testing.assert_array_equal(got["reference_label"].to_numpy().reshape(30, 5), expected[1] + 1000)


def test_index_level_add_remove_keeps_exact_answers_exact():
    vectors = clustered(500)
    index = build_index(vectors[:300], "dot", "brute_force")
    index.add(vectors[300:])
    index.remove([5, 6, 7])
    expected = ExactIndex(np.delete(vectors, [5, 6, 7], axis=0), "dot").search(vectors[:20], 8)
    for got, want in zip(index.search(vectors[:20], 8), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_label_errors_are_clear(sample_model):
    model = lk.create(table(range(10)), label="name", verbose=False)
    with pytest.raises(ValueError, match=r"label column 'name': 2 new labels are already references"):
        model.add(table(range(8, 12)), verbose=False)
    assert len(model.labels) == 10  # nothing half-added
    with pytest.raises(ValueError, match="no reference has label 'nope'"):
        model.remove([NAMES[0], "nope"])
    with pytest.raises(ValueError, match="labels to remove are repeated"):
        model.remove([NAMES[0], NAMES[0]])
    with pytest.raises(ValueError, match="cannot remove every reference"):
        model.remove(NAMES[:10])
    with pytest.raises(ValueError, match="label column 'name' must be unique"):
        model.add(pd.concat([table([20]), table([20])]), verbose=False)
    assert len(model.labels) == 10 and len(model.core.index) == 10
    model.remove(NAMES[3])  # a single label works too
    assert NAMES[3] not in set(model.labels)


def test_add_wrong_length_embeddings_is_refused():
    model = lk.create(clustered(50), model=None)
    with pytest.raises(ValueError, match="added embeddings have length 7, but this model's .* have length 32"):
        model.add(np.zeros((3, 7), np.float32))
    assert len(model.labels) == len(model.core.index) == len(model.references) == 50  # nothing half-added


# -------------------------------------------------------------------- lookalike index, in place


def test_cli_index_updates_an_existing_model_in_place(tmp_path, sample_model, capsys):
    folder = tmp_path / "photos"
    for path in PATHS[:16]:
        target = folder / path.split("/")[-2] / path.split("/")[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    out = tmp_path / "photos.lookalike"
    assert cli(["index", str(folder), "-o", str(out), "-q"]) == 0
    before = lk.load_model(out)
    files = sorted(folder.rglob("*.jpg"))
    files[0].unlink()  # deleted
    shutil.copy(PATHS[40], folder / "new.jpg")  # added
    with Image.open(files[1]) as image:  # changed: same path, other pixels
        image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(files[1])
    capsys.readouterr()
    assert cli(["index", str(folder), "-o", str(out), "-q"]) == 0
    assert "updated in place: 1 added, 1 removed, 1 changed" in capsys.readouterr().out
    updated = lk.load_model(out)
    assert updated.build_stats["embedded"] == 2 and updated.build_stats["from_cache"] == 14
    kept = set(before.labels.tolist()) - {0, 1}
    assert kept <= set(updated.labels.tolist())  # unchanged references keep their labels
    assert cli(["index", str(folder), "-o", str(tmp_path / "fresh"), "-q"]) == 0
    fresh = lk.load_model(tmp_path / "fresh")

    def by_path(model):
        paths = pd.Series(model.references["path"].to_numpy(), index=model.labels)
        result = model.query(np.asarray(sample_model.embeddings), k=5)
        return result.assign(reference_label=paths.reindex(result["reference_label"]).to_numpy())

    pd.testing.assert_frame_equal(by_path(updated), by_path(fresh))
    assert len(list(tmp_path.glob(".photos.lookalike*"))) == 0  # the atomic save left nothing behind


def six_photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in PATHS[:6]:
        shutil.copy(path, folder / path.split("/")[-1])
    return folder


def test_cli_index_rebuilds_when_asked_or_when_the_network_differs(tmp_path, capsys):
    folder, out = six_photos(tmp_path), tmp_path / "m"
    assert cli(["index", str(folder), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert cli(["index", str(folder), "-o", str(out), "-q", "--rebuild"]) == 0
    assert "updated in place" not in capsys.readouterr().out
    assert cli(["index", str(folder), "-o", str(out), "-q", "--metric", "cosine"]) == 0
    assert "updated in place" not in capsys.readouterr().out and lk.load_model(out).metric == "cosine"
    assert cli(["index", str(folder), "-o", str(out), "-q", "--metric", "cosine", "--method", "hnsw"]) == 0
    assert lk.load_model(out).summary(output="dict")["method"] == "hnsw"


def test_cli_index_descriptor_is_kept_unless_another_is_asked_for(tmp_path, capsys):
    folder, out = six_photos(tmp_path), tmp_path / "m"

    def descriptor() -> dict:
        return manifest_of(out)["embedding_model"]["descriptor"]

    assert cli(["index", str(folder), "-o", str(out), "-q"]) == 0
    assert descriptor()["pooling"] == "gem"  # the default
    capsys.readouterr()
    assert cli(["index", str(folder), "-o", str(out), "-q", "--descriptor", "plain"]) == 0
    assert "updated in place" not in capsys.readouterr().out and descriptor()["pooling"] == "avg"
    plain = lk.create(sorted(str(p) for p in folder.iterdir()), descriptor="plain", verbose=False)
    np.testing.assert_array_equal(
        np.sort(np.asarray(lk.load_model(out).embeddings), axis=0), np.sort(np.asarray(plain.embeddings), axis=0)
    )
    shutil.copy(PATHS[10], folder / "new.jpg")
    assert cli(["index", str(folder), "-o", str(out), "-q"]) == 0  # no --descriptor: the model keeps plain
    assert "updated in place: 1 added" in capsys.readouterr().out and descriptor()["pooling"] == "avg"
    assert cli(["index", str(folder), "-o", str(out), "-q", "--descriptor", "plain"]) == 0  # the same: in place
    assert "updated in place: 0 added" in capsys.readouterr().out
    assert cli(["index", str(folder), "-o", str(out), "-q", "--descriptor", "nonsense"]) == 1
    assert "nonsense" in capsys.readouterr().err
