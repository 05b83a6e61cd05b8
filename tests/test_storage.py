"""Saved models: a directory of JSON, .npy and parquet, written atomically, validated on load, never a pickle.

Saves killed mid-way, concurrent readers, damaged and hostile files, full disks: tests/test_faults.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pyarrow.parquet as pq
import pytest

import lookalike as lk
from conftest import DEFAULT_DIM, SAMPLES, edit_manifest, generation, manifest_of, reseal
from lookalike.embed.registry import CAFFE, DEFAULT_MODEL, get_spec
from lookalike.store import storage

PATHS = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
#: The files of every saved model (a projection or an ANN index add theirs).
FILES = ("embeddings.npy", "failures.parquet", "references.parquet")


@pytest.fixture(scope="module")
def saved(sample_model, tmp_path_factory) -> Path:
    """The session's sample model, saved once for the read-only tests of this module."""
    path = tmp_path_factory.mktemp("saved") / "clothing.lookalike"
    sample_model.save(path)
    return path


def copy_of(saved: Path, tmp_path: Path) -> Path:
    """A private copy of the saved model, for tests that damage it."""
    target = tmp_path / "copy.lookalike"
    shutil.copytree(saved, target)
    return target


# ------------------------------------------------------------------------------- roundtrip


def test_roundtrip_answers_identically(sample_model, sample_refs, saved):
    loaded = lk.load_model(saved)
    assert repr(loaded) == repr(sample_model)
    assert loaded.metric == "euclidean" and loaded.feature == "path" and loaded.model_name == DEFAULT_MODEL
    np.testing.assert_array_equal(loaded.labels, sample_model.labels)
    np.testing.assert_array_equal(loaded.embeddings, sample_model.embeddings)
    pd.testing.assert_frame_equal(loaded.references, sample_model.references)
    queries = sample_refs.iloc[::7]
    assert loaded.query(queries, k=5, verbose=False).equals(sample_model.query(queries, k=5, verbose=False))
    vectors = sample_model.embeddings[[1, 50]]
    assert loaded.query(vectors, k=3).equals(sample_model.query(vectors, k=3))
    table = sample_model.similarity_graph(k=4, output_type="table")
    assert loaded.similarity_graph(k=4, output_type="table").equals(table)
    graph, loaded_graph = sample_model.similarity_graph(k=4), loaded.similarity_graph(k=4)
    assert sorted(graph.edges(data=True)) == sorted(loaded_graph.edges(data=True))
    assert loaded.summary(output="dict") == sample_model.summary(output="dict")


def test_embeddings_are_memory_mapped(saved):
    loaded = lk.load_model(saved)
    assert isinstance(loaded.embeddings, np.memmap)
    assert Path(loaded.embeddings.filename).resolve() == (generation(saved) / "embeddings.npy").resolve()
    assert not loaded.embeddings.flags.writeable


def test_roundtrip_labels_failures_and_metric(tmp_path, bad_files, imagegen):
    folder = bad_files["zero"].parent
    for i in range(3):
        imagegen.copy_sample(folder / f"good{i}.jpg", 20 * i)
    refs = lk.load_images(folder)
    refs["name"] = [f"photo-{Path(p).stem}" for p in refs["path"]]
    model = lk.create(refs, label="name", metric="cosine", verbose=False)
    assert len(model.failures) == 4
    model.save(tmp_path / "m")
    loaded = lk.load_model(tmp_path / "m")
    assert loaded.metric == "cosine" and loaded.label == "name"
    assert loaded.labels.tolist() == model.labels.tolist()
    pd.testing.assert_frame_equal(loaded.failures, model.failures)
    queries = refs[refs["path"].str.contains("good")]
    assert loaded.query(queries, label="name", k=2, verbose=False).equals(
        model.query(queries, label="name", k=2, verbose=False)
    )


def test_roundtrip_precomputed(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(25, 7)).astype(np.float32)
    model = lk.create(vectors, model=None, metric="dot")
    model.save(tmp_path / "vectors")
    loaded = lk.load_model(tmp_path / "vectors")
    assert loaded.model_name is None and loaded.metric == "dot"
    assert loaded.query(vectors[:3], k=4).equals(model.query(vectors[:3], k=4))
    with pytest.raises(ValueError, match="precomputed"):
        loaded.query(PATHS[0])


def test_roundtrip_in_memory_images_keeps_no_pixels(tmp_path, sample_model):
    table = pd.DataFrame({"image": [Path(p).read_bytes() for p in PATHS[:3]], "tag": ["a", "b", "c"]})
    model = lk.create(table, label="tag", verbose=False)
    model.save(tmp_path / "m")
    references = pd.read_parquet(generation(tmp_path / "m") / "references.parquet")
    assert "image" not in references.columns
    loaded = lk.load_model(tmp_path / "m")
    result = loaded.query(PATHS[1], k=1, verbose=False)
    assert result["reference_label"].tolist() == ["b"] and result["distance"].tolist() == [0.0]


def test_roundtrip_local_onnx_model(tmp_path):
    onnx_file = tmp_path / "net.onnx"
    shutil.copyfile(get_spec("squeezenet_v1.1").onnx_file(), onnx_file)
    model = lk.create(PATHS[:4], model=onnx_file, preprocessing=CAFFE.to_dict(), verbose=False)
    model.save(tmp_path / "m")
    loaded = lk.load_model(tmp_path / "m")
    assert loaded.model_name == "onnx:net.onnx"
    assert loaded.query(PATHS[2], k=2, verbose=False).equals(model.query(PATHS[2], k=2, verbose=False))
    changed = onnx.load(str(onnx_file))
    changed.doc_string = "retrained"  # another file at the same path: its embeddings are not comparable
    onnx.save(changed, str(onnx_file))
    with pytest.raises(ValueError, match="fingerprint"):
        lk.load_model(tmp_path / "m").query(PATHS[2], k=2, verbose=False)


# ---------------------------------------------------------------------------------- atomic


def test_save_replaces_an_existing_model(tmp_path, sample_model):
    target = tmp_path / "model"
    sample_model.save(target)
    small = lk.create(np.eye(4, dtype=np.float32), model=None)
    small.save(target)
    loaded = lk.load_model(target)
    assert len(loaded.labels) == 4 and loaded.model_name is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or retired folders left
    assert sorted(p.name for p in target.iterdir()) == ["CURRENT", "gen-000002"]  # the first generation is gone
    assert sorted(p.name for p in generation(target).iterdir()) == sorted([*FILES, "manifest.json"])


def test_save_refuses_to_overwrite_other_things(tmp_path, sample_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not a lookalike model"):
        sample_model.save(photos)
    assert [p.name for p in photos.iterdir()] == ["holiday.jpg"]
    assert (photos / "holiday.jpg").read_bytes() == b"precious"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(FileExistsError):
        sample_model.save(a_file)
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photos"]
    empty = tmp_path / "empty"
    empty.mkdir()
    sample_model.save(empty)  # an empty folder may be used
    assert len(lk.load_model(empty).labels) == 80


def test_failed_save_keeps_the_old_model(tmp_path):
    target = tmp_path / "model"
    good = lk.create(np.eye(3, dtype=np.float32), model=None)
    good.save(target)
    table = pd.DataFrame({"id": [1, "two"], "v": [np.zeros(3), np.ones(3)]})  # labels of mixed types
    bad = lk.create(table, label="id", model=None)
    with pytest.raises(ValueError, match="cannot save"):
        bad.save(target)
    assert len(lk.load_model(target).labels) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_creates_parent_folders(tmp_path):
    lk.create(np.eye(2, dtype=np.float32), model=None).save(tmp_path / "a" / "b" / "m")
    assert len(lk.load_model(tmp_path / "a" / "b" / "m").labels) == 2


# ------------------------------------------------------------------------------ validation


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        lk.load_model(tmp_path / "nothing")


def test_load_not_a_model(tmp_path):
    a_file = tmp_path / "model.txt"
    a_file.write_text("hi")
    with pytest.raises(lk.ModelFormatError, match="not a lookalike model"):
        lk.load_model(a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(lk.ModelFormatError, match="manifest.json is missing"):
        lk.load_model(empty)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(json.dumps({"format": "someone-else", "version": 3}))
    with pytest.raises(lk.ModelFormatError, match="not a lookalike model"):
        lk.load_model(foreign)
    (foreign / "manifest.json").write_text("[1, 2, 3]")
    with pytest.raises(lk.ModelFormatError, match="not a lookalike model"):
        lk.load_model(foreign)


def test_load_garbage_manifest(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (generation(path) / "manifest.json").write_bytes(b"\x00\xff{not json")
    with pytest.raises(lk.ModelFormatError, match="manifest.json is damaged: its SHA-256 is not the one CURRENT"):
        lk.load_model(path)
    reseal(path)
    with pytest.raises(lk.ModelFormatError, match="not JSON"):
        lk.load_model(path)


def test_load_newer_format(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    edit_manifest(path, format_version=storage.FORMAT_VERSION + 1)
    with pytest.raises(lk.ModelFormatError, match="newer.*upgrade lookalike"):
        lk.load_model(path)
    edit_manifest(path, format_version="one")
    with pytest.raises(lk.ModelFormatError, match="invalid format_version"):
        lk.load_model(path)


def test_load_missing_file(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (generation(path) / "references.parquet").unlink()
    with pytest.raises(lk.ModelFormatError, match="missing references.parquet"):
        lk.load_model(path)


def test_load_truncated_embeddings(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    data = (generation(path) / "embeddings.npy").read_bytes()
    (generation(path) / "embeddings.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(lk.ModelFormatError, match=f"embeddings.npy is damaged: it holds {len(data) // 2} bytes"):
        lk.load_model(path)
    reseal(path)
    with pytest.raises(lk.ModelFormatError, match="embeddings.npy is damaged: mmap length is greater than file size"):
        lk.load_model(path)


def test_load_garbage_parquet(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (generation(path) / "failures.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(lk.ModelFormatError, match="failures.parquet is damaged"):
        lk.load_model(path)
    reseal(path)
    with pytest.raises(lk.ModelFormatError, match="failures.parquet is damaged"):
        lk.load_model(path)


def test_load_shape_mismatch(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    edit_manifest(path, count=81)
    with pytest.raises(
        lk.ModelFormatError,
        match=rf"embeddings.npy is float32 \(80, {DEFAULT_DIM}\), manifest says float32 \(81, {DEFAULT_DIM}\)",
    ):
        lk.load_model(path)
    path = copy_of(saved, tmp_path / "other")
    np.save(generation(path) / "embeddings.npy", np.zeros((80, DEFAULT_DIM), np.float64))
    reseal(path)
    with pytest.raises(lk.ModelFormatError, match="float64"):
        lk.load_model(path)
    path = copy_of(saved, tmp_path / "third")
    references = generation(path) / "references.parquet"
    pd.read_parquet(references).head(10).to_parquet(references)
    reseal(path)
    with pytest.raises(lk.ModelFormatError, match="references.parquet does not match"):
        lk.load_model(path)


def test_load_bad_metric(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    edit_manifest(path, metric="manhattan")
    with pytest.raises(lk.ModelFormatError, match="manhattan"):
        lk.load_model(path)


def test_wrong_embedding_model_fingerprint(saved, tmp_path, sample_model):
    """Mixing models: a saved model whose embeddings came from other weights cannot be queried with images."""
    path = copy_of(saved, tmp_path)
    edit_manifest(path, embedding_model={**manifest_of(path)["embedding_model"], "fingerprint": "0123456789abcdef"})
    loaded = lk.load_model(path)  # the model itself is readable...
    vectors = sample_model.embeddings[[3]]
    assert loaded.query(vectors, k=2).equals(sample_model.query(vectors, k=2))  # ...and its vectors usable
    with pytest.raises(ValueError, match="fingerprint 0123456789abcdef") as excinfo:
        loaded.query(PATHS[3], k=2, verbose=False)
    assert get_spec(DEFAULT_MODEL).with_descriptor(None).fingerprint in str(excinfo.value)
    with pytest.raises(ValueError, match="fingerprint"):
        loaded.extract_features(PATHS[3], verbose=False)


def test_unknown_embedding_model(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    edit_manifest(path, embedding_model={**manifest_of(path)["embedding_model"], "name": "resnet-9000"})
    with pytest.raises(ValueError, match="resnet-9000"):
        lk.load_model(path).query(PATHS[0], verbose=False)


def test_query_with_vectors_of_the_wrong_length(saved):
    loaded = lk.load_model(saved)
    with pytest.raises(ValueError, match="length 100"):
        loaded.query([np.zeros(100, np.float32), np.ones(100, np.float32)], k=1)
    with pytest.raises(ValueError, match=str(DEFAULT_DIM)):
        loaded.query(np.zeros(100, np.float32), k=1)
    with pytest.raises(ValueError, match="length 100"):
        loaded.query(pd.DataFrame({"v": [np.zeros(100, np.float32)]}), k=1)


# -------------------------------------------------------------------------------- no pickle


def test_saved_files_are_plain_formats(saved):
    assert sorted(p.name for p in saved.iterdir()) == ["CURRENT", "gen-000001"]
    saved = generation(saved)
    assert sorted(p.name for p in saved.iterdir()) == sorted([*FILES, "manifest.json"])
    for path in saved.iterdir():
        assert not path.read_bytes().startswith(b"\x80")  # no pickle stream anywhere
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format"] == storage.FORMAT and manifest["format_version"] == storage.FORMAT_VERSION
    assert manifest["count"] == 80 and manifest["dim"] == DEFAULT_DIM and manifest["metric"] == "euclidean"
    assert manifest["embedding_model"]["fingerprint"] == get_spec(DEFAULT_MODEL).with_descriptor(None).fingerprint
    embeddings = np.load(saved / "embeddings.npy", allow_pickle=False)
    assert embeddings.dtype == np.float32 and embeddings.shape == (80, DEFAULT_DIM)
    for name in ("references.parquet", "failures.parquet"):
        data = (saved / name).read_bytes()
        assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
        pq.read_table(saved / name)  # a real parquet file
    references = pd.read_parquet(saved / "references.parquet")
    assert references[storage.LABEL_COLUMN].tolist() == list(range(80))
    assert references["path"].tolist() == PATHS
