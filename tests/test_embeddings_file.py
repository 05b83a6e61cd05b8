"""Precomputed embeddings in a .npy file: indexed where they lie (memory-mapped), from Python and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lookalike as lk
from lookalike.cli import main as cli
from lookalike.index import ExactIndex
from lookalike.index.recall import recall_at_k


def _vectors(n: int = 3000, dim: int = 24) -> np.ndarray:
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((30, dim))
    return (centres[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


def test_npy_is_indexed_in_place_and_answers_exactly(tmp_path):
    path = tmp_path / "vectors.npy"
    vectors = _vectors()
    np.save(path, vectors)
    model = lk.create(path, model=None, verbose=False)
    # Not copied: the model's embeddings are the file's pages.
    base = model.embeddings
    while not isinstance(base, np.memmap) and base.base is not None:
        base = base.base
    assert isinstance(base, np.memmap) and str(base.filename) == str(path.resolve())
    expected_d, expected_p = ExactIndex(vectors, "euclidean").search(vectors[:50], 6)
    got = model.query(vectors[:50], k=6)
    np.testing.assert_array_equal(got["reference_label"].to_numpy().reshape(50, 6), expected_p)
    np.testing.assert_array_equal(got["distance"].to_numpy().reshape(50, 6), expected_d)
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(lk.load_model(tmp_path / "m").embeddings, vectors)


def test_bad_npy_files_are_named_with_their_fault(tmp_path):
    nan = _vectors(100)
    nan[37, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match=r"nan\.npy: embedding row 37 holds NaN"):
        lk.create(tmp_path / "nan.npy", model=None, verbose=False)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy is not a readable \.npy file"):
        lk.create(tmp_path / "objects.npy", model=None, verbose=False)
    np.save(tmp_path / "flat.npy", np.arange(10.0))
    with pytest.raises(ValueError, match=r"flat\.npy must hold a 2-D"):
        lk.create(tmp_path / "flat.npy", model=None, verbose=False)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        lk.create(tmp_path / "missing.npy", model=None, verbose=False)
    np.save(tmp_path / "good.npy", _vectors(100))
    with pytest.raises(ValueError, match="pass model=None"):  # a network has nothing to embed here
        lk.create(tmp_path / "good.npy", verbose=False)


def test_cli_indexes_a_npy_file(tmp_path, capsys):
    path = tmp_path / "vectors.npy"
    np.save(path, _vectors())
    assert cli(["index", str(path), "-o", str(tmp_path / "v.lookalike"), "--metric", "cosine"]) == 0
    assert "indexed 3000 embeddings" in capsys.readouterr().out
    assert cli(["info", str(tmp_path / "v.lookalike"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_references"] == 3000 and info["model"] == "precomputed" and info["metric"] == "cosine"
    assert cli(["index", str(path), "-o", str(tmp_path / "w.lookalike"), "--model", "squeezenet_v1.1"]) == 1
    assert "holds embeddings already: drop --model" in capsys.readouterr().err


def _mapped(array: np.ndarray) -> bool:
    while not isinstance(array, np.memmap) and isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return isinstance(array, np.memmap)


@pytest.mark.parametrize("method", ["brute_force", "IVF16,SQ8"])
def test_add_and_remove_keep_mapped_vectors_out_of_memory(tmp_path, monkeypatch, method):
    """Adding to (or removing from) a memory-mapped model copies its vectors into a new file, not into memory."""
    from lookalike.store import files

    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "SCRATCH_BYTES", 1)  # every mapped matrix counts as large
    vectors = _vectors()
    np.save(tmp_path / "vectors.npy", vectors[:2500])
    model = lk.create(tmp_path / "vectors.npy", model=None, method=method, verbose=False)
    model.add(vectors[2500:])
    assert _mapped(model.embeddings) and _mapped(model.core.index.vectors)
    model.remove(np.arange(0, 3000, 7))
    assert _mapped(model.embeddings)
    kept = np.delete(np.arange(3000), np.arange(0, 3000, 7))
    np.testing.assert_array_equal(model.embeddings, vectors[kept])
    assert not list((tmp_path / "cache" / "scratch").iterdir())  # the copies' names are gone already
    truth_d, truth_p = ExactIndex(vectors[kept], "euclidean").search(vectors[:40], 5)
    got = model.query(vectors[:40], k=5)
    distances = got["distance"].to_numpy().reshape(40, 5)
    if method == "brute_force":
        np.testing.assert_array_equal(distances, truth_d)
        np.testing.assert_array_equal(got["reference_label"].to_numpy().reshape(40, 5), kept[truth_p])
    else:
        assert recall_at_k(distances, truth_d) >= 0.95
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(lk.load_model(tmp_path / "m").embeddings, vectors[kept])


def test_embeddings_of_a_large_collection_are_written_to_disk_as_they_are_made(tmp_path, monkeypatch):
    """Past files.SCRATCH_BYTES the embedder fills a scratch file, not memory; unreadable images are squeezed out."""
    import shutil

    from conftest import SAMPLES
    from lookalike.store import files

    folder, good = tmp_path / "photos", tmp_path / "good"
    folder.mkdir()
    good.mkdir()
    for path in sorted(SAMPLES.rglob("*.jpg"))[:12]:
        shutil.copy(path, folder / path.name)
        shutil.copy(path, good / path.name)
    (folder / "a-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # listed first: every row moves up
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    in_memory = lk.create(folder, cache=False, verbose=False)
    expected = lk.create(good, cache=False, verbose=False)
    monkeypatch.setattr(files, "SCRATCH_BYTES", 1)
    on_disk = lk.create(folder, cache=False, verbose=False)
    assert _mapped(on_disk.embeddings) and not _mapped(in_memory.embeddings)
    assert len(on_disk.failures) == 1 and len(on_disk.labels) == 12
    for model in (in_memory, on_disk):
        np.testing.assert_array_equal(model.embeddings, expected.embeddings)
    assert not list((tmp_path / "cache" / "scratch").iterdir())
