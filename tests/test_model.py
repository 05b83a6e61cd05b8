"""The user-facing model: create from every kind of dataset, query with Turi's semantics, graph, features, summary."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lookalike as lk
from conftest import DEFAULT_DIM, SAMPLES
from lookalike.embed.registry import CAFFE, DEFAULT_MODEL, get_spec

RESULT_COLUMNS = ["query_label", "reference_label", "distance", "rank"]
EDGE_COLUMNS = ["__src_id", "__dst_id", "distance", "rank"]
PATHS = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
SOME = PATHS[::10]  # one photo of each class, 8 of them
CHECKER = Path(__file__).resolve().parent.parent / "scripts" / "check_architecture.py"


def same_embeddings(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def check_turi_result(result: pd.DataFrame, n_queries: int, k: int) -> None:
    """Turi's columns first (then the files of queries and references that are files), ranks 1..k per query,
    distances non-decreasing within each query."""
    assert result.columns.tolist()[:4] == RESULT_COLUMNS
    assert result.columns.tolist()[4:] in ([], ["reference_path"], ["query_path", "reference_path"])
    assert len(result) == n_queries * k
    assert result["rank"].tolist() == list(range(1, k + 1)) * n_queries
    for _, rows in result.groupby("query_label", sort=False):
        assert rows["distance"].is_monotonic_increasing
    assert (result["distance"] >= 0).all()


# ------------------------------------------------------------------------------------ create


def test_create_from_folder(sample_model, sample_refs):
    model = sample_model
    assert len(model.labels) == 80 and model.labels.tolist() == list(range(80))
    assert model.embeddings.shape == (80, DEFAULT_DIM) and model.embeddings.dtype == np.float32
    assert model.references["path"].tolist() == PATHS
    assert (
        model.references[["width", "height"]].to_numpy().tolist()
        == sample_refs[["width", "height"]].to_numpy().tolist()
    )
    assert model.feature == "path" and model.label is None
    assert model.model_name == DEFAULT_MODEL and model.metric == "euclidean" and model.dim == DEFAULT_DIM
    assert len(model.failures) == 0 and model.failures.columns.tolist() == ["source", "kind", "reason"]


def test_create_from_list_of_paths_embeds_the_same(sample_model):
    model = lk.create(SOME, verbose=False, cache=False)
    assert model.references["path"].tolist() == SOME
    same_embeddings(model.embeddings, sample_model.embeddings[::10])


def test_create_from_load_images_table_with_label(sample_refs, sample_model):
    refs = sample_refs.iloc[::10].copy()
    refs["name"] = [Path(p).stem for p in refs["path"]]
    model = lk.create(refs, label="name", verbose=False, cache=False)
    assert model.labels.tolist() == refs["name"].tolist()
    assert model.label == "name" and model.feature == "path"
    assert {"name", "path", "width", "bytes"} <= set(model.references.columns)
    same_embeddings(model.embeddings, sample_model.embeddings[::10])
    result = model.query(refs, label="name", k=2, verbose=False)
    check_turi_result(result, len(refs), 2)
    first = result[result["rank"] == 1]
    assert first["query_label"].tolist() == first["reference_label"].tolist() == refs["name"].tolist()
    assert (first["distance"] == 0.0).all()


@pytest.mark.parametrize("kind", ["bytes", "pil", "array"])
def test_create_from_in_memory_images(kind, sample_model):
    if kind == "bytes":
        images = [Path(p).read_bytes() for p in SOME]
    elif kind == "pil":
        images = [Image.open(p) for p in SOME]
    else:
        images = [np.asarray(Image.open(p).convert("RGB")) for p in SOME]
    table = pd.DataFrame({"photo": images, "class": [Path(p).parent.name for p in SOME]})
    model = lk.create(table, label="class", verbose=False)
    assert model.feature == "photo"  # found without feature=
    assert model.labels.tolist() == table["class"].tolist()
    assert "photo" not in model.references.columns  # pixels are not kept in the reference table
    same_embeddings(model.embeddings, sample_model.embeddings[::10])


def test_explicit_feature_among_several_image_columns(sample_model):
    table = pd.DataFrame({"front": SOME[:4], "back": SOME[4:]})
    with pytest.raises(ValueError, match="several columns"):
        lk.create(table, verbose=False)
    model = lk.create(table, feature="back", verbose=False)
    assert model.feature == "back"
    same_embeddings(model.embeddings, sample_model.embeddings[40::10])
    preferred = lk.create(pd.DataFrame({"other": SOME[:2], "path": SOME[2:4]}), verbose=False)
    assert preferred.feature == "path"  # the conventional name wins


def test_precomputed_embeddings_2d_array():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 16)).astype(np.float64)
    model = lk.create(vectors, model=None, verbose=False)
    assert model.model_name is None and model.dim == 16 and model.embeddings.dtype == np.float32
    result = model.query(vectors[[4, 9]], k=3)
    check_turi_result(result, 2, 3)
    assert result.loc[result["rank"] == 1, "reference_label"].tolist() == [4, 9]
    assert result.loc[result["rank"] == 1, "query_label"].tolist() == [0, 1]
    assert (result.loc[result["rank"] == 1, "distance"] == 0.0).all()
    single = model.query(vectors[7].astype(np.float32), k=1)
    assert single["reference_label"].tolist() == [7]
    with pytest.raises(ValueError, match="precomputed embeddings"):
        model.query(SOME[0], k=1)
    with pytest.raises(ValueError, match="model=None"):
        lk.create(vectors, verbose=False)  # embeddings given to an image model


def test_precomputed_embeddings_column_with_labels():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(12, 8)).astype(np.float32)
    table = pd.DataFrame({"id": [f"item{i}" for i in range(12)], "vec": list(vectors)})
    model = lk.create(table, label="id", model=None, metric="cosine")
    assert model.labels.tolist() == table["id"].tolist()
    result = model.query(pd.DataFrame({"name": ["a", "b"], "v": [vectors[3], vectors[11]]}), label="name", k=2)
    check_turi_result(result, 2, 2)
    assert result.loc[result["rank"] == 1, "reference_label"].tolist() == ["item3", "item11"]
    assert result["query_label"].tolist() == ["a", "a", "b", "b"]
    listed = model.query([vectors[5], vectors[6]], k=1)
    assert listed["reference_label"].tolist() == ["item5", "item6"]
    with pytest.raises(ValueError, match="length 5"):
        model.query([np.zeros(5, np.float32)], k=1)
    ragged = pd.DataFrame({"vec": [np.zeros(3), np.zeros(4)]})
    with pytest.raises(ValueError, match="one length"):
        lk.create(ragged, model=None)
    with pytest.raises(ValueError, match="NaN"):
        lk.create(pd.DataFrame({"vec": [np.zeros(3), np.array([1.0, np.nan, 0.0])]}), model=None)


# ------------------------------------------------------------------------------------- query


def test_query_references_turi_semantics(sample_model, sample_refs):
    result = sample_model.query(sample_refs, k=5, verbose=False)
    check_turi_result(result, 80, 5)
    assert result["query_label"].tolist() == np.repeat(np.arange(80), 5).tolist()  # row numbers
    first = result[result["rank"] == 1]
    assert first["reference_label"].tolist() == list(range(80))  # each photo finds itself...
    assert (first["distance"] == 0.0).all()  # ...at distance exactly 0
    assert (result.loc[result["rank"] > 1, "distance"] > 0).all()


def test_query_single_images_of_every_type(sample_model):
    path = PATHS[33]
    expected = sample_model.query(path, k=3, verbose=False)
    check_turi_result(expected, 1, 3)
    assert expected["reference_label"].iloc[0] == 33 and expected["distance"].iloc[0] == 0.0
    assert expected["query_label"].tolist() == [0, 0, 0]
    for query in (Path(path), Image.open(path), np.asarray(Image.open(path)), Path(path).read_bytes()):
        result = sample_model.query(query, k=3, verbose=False)
        assert result["reference_label"].tolist() == expected["reference_label"].tolist()
        np.testing.assert_allclose(result["distance"], expected["distance"], atol=1e-3)


def test_query_list_and_dataframe(sample_model):
    listed = sample_model.query([PATHS[5], PATHS[60]], k=2, verbose=False)
    check_turi_result(listed, 2, 2)
    assert listed.loc[listed["rank"] == 1, "reference_label"].tolist() == [5, 60]
    table = pd.DataFrame({"file": [PATHS[60], PATHS[5]], "tag": ["x", "y"]})
    framed = sample_model.query(table, label="tag", k=2, verbose=False)
    assert framed.loc[framed["rank"] == 1, "reference_label"].tolist() == [60, 5]
    assert framed["query_label"].tolist() == ["x", "x", "y", "y"]
    images = sample_model.query([Image.open(PATHS[5]), Image.open(PATHS[60])], k=2, verbose=False)
    # Queries that are files are named by path; images in memory have none.
    assert listed["query_path"].tolist() == [PATHS[5]] * 2 + [PATHS[60]] * 2
    pd.testing.assert_frame_equal(images, listed.drop(columns="query_path"))


def test_query_by_embedding_vectors(sample_model):
    result = sample_model.query(sample_model.embeddings[[2, 70]], k=4)
    check_turi_result(result, 2, 4)
    expected = sample_model.query([PATHS[2], PATHS[70]], k=4, verbose=False)
    pd.testing.assert_frame_equal(result, expected.drop(columns="query_path"))  # vectors are no files


def test_query_by_2d_float_array_of_wrong_width_is_refused(sample_model):
    with pytest.raises(ValueError, match=f"length 100, but this model's have length {DEFAULT_DIM}"):
        sample_model.query(np.ones((3, 100), np.float32), k=2)


def test_query_k_larger_than_references_returns_all(sample_model):
    result = sample_model.query(PATHS[0], k=1000, verbose=False)
    check_turi_result(result, 1, 80)
    assert sorted(result["reference_label"]) == list(range(80))


def test_query_radius(sample_model):
    full = sample_model.query([PATHS[0], PATHS[1]], k=80, verbose=False)
    radius = float(full["distance"].median())
    near = sample_model.query([PATHS[0], PATHS[1]], k=80, radius=radius, verbose=False)
    assert 0 < len(near) < len(full)
    assert (near["distance"] <= radius).all()
    pd.testing.assert_frame_equal(near, full[full["distance"] <= radius].reset_index(drop=True))
    only_self = sample_model.query(PATHS[0], k=5, radius=0.0, verbose=False)
    assert only_self["reference_label"].tolist() == [0]
    with pytest.raises(ValueError, match="radius"):
        sample_model.query(PATHS[0], radius=-1.0, verbose=False)


@pytest.mark.parametrize("k", [0, -3, True, 2.5, "5", None])
def test_bad_k(sample_model, k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sample_model.query(PATHS[0], k=k, verbose=False)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sample_model.similarity_graph(k=k)


def test_bad_queries(sample_model, tmp_path):
    with pytest.raises(TypeError, match="int"):
        sample_model.query(42, verbose=False)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        sample_model.query(str(tmp_path / "missing.jpg"), verbose=False)
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        sample_model.query([PATHS[0], tmp_path / "gone.jpg"], verbose=False)
    with pytest.raises(TypeError):
        sample_model.query([PATHS[0], 7], verbose=False)
    with pytest.raises(ValueError, match="'no_such_column'"):
        sample_model.query(pd.DataFrame({"path": PATHS[:2]}), label="no_such_column", verbose=False)
    with pytest.raises(ValueError, match="empty"):
        sample_model.query([], verbose=False)
    with pytest.raises(ValueError, match="empty"):
        sample_model.query(pd.DataFrame({"path": []}), verbose=False)
    with pytest.raises(ValueError, match=f"length {DEFAULT_DIM}"):
        sample_model.query(np.zeros(100, np.float32), verbose=False)
    with pytest.raises(ValueError, match="length 100"):
        sample_model.query([np.zeros(100, np.float32)] * 2, verbose=False)


def test_query_with_bad_images(sample_model, bad_files):
    with pytest.warns(RuntimeWarning, match="truncated"):
        result = sample_model.query([bad_files["truncated"], PATHS[9]], k=1, verbose=False)
    assert result["query_label"].tolist() == [1]  # the good query keeps its own row number
    assert result["reference_label"].tolist() == [9]
    with pytest.raises(lk.ImageError) as excinfo, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sample_model.query(bad_files["text"], verbose=False)
    assert str(bad_files["text"]) in str(excinfo.value) and "not an image" in str(excinfo.value)


# ------------------------------------------------------------------------ create: bad input


def test_create_bad_arguments(tmp_path, sample_refs):
    with pytest.raises(ValueError, match="'nope'"):
        lk.create(sample_refs.head(3), label="nope", verbose=False)
    with pytest.raises(ValueError, match="'nope'"):
        lk.create(sample_refs.head(3), feature="nope", verbose=False)
    with pytest.raises(ValueError, match="does not hold"):
        lk.create(sample_refs.head(3), feature="width", verbose=False)
    with pytest.raises(ValueError, match="no column"):
        lk.create(pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}), verbose=False)
    with pytest.raises(ValueError, match="none of the 2 images could be read; first failure: x: file not found"):
        lk.create(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), verbose=False)  # strings are taken as paths
    with pytest.raises(ValueError, match="empty"):
        lk.create(pd.DataFrame({"path": []}), verbose=False)
    with pytest.raises(ValueError, match="empty"):
        lk.create([], verbose=False)
    with pytest.raises(ValueError, match="unique"):
        lk.create(pd.DataFrame({"path": SOME[:3], "c": ["a", "b", "a"]}), label="c", verbose=False)
    with pytest.raises(ValueError, match="metric"):
        lk.create(SOME[:2], metric="hamming", verbose=False)
    with pytest.raises(ValueError, match="batch_size"):
        lk.create(SOME[:2], batch_size=0, verbose=False)
    with pytest.raises(ValueError, match="unknown model"):
        lk.create(SOME[:2], model="resnet-9000", verbose=False)
    with pytest.raises(TypeError, match="dict"):
        lk.create({"a": 1}, verbose=False)


def test_folder_with_some_bad_files(tmp_path, bad_files, imagegen):
    folder = bad_files["zero"].parent
    good = [imagegen.copy_sample(folder / f"good{i}.jpg", i * 9) for i in range(4)]
    model = lk.create(folder, verbose=False)
    assert sorted(model.references["path"]) == sorted(map(str, good))
    failures = dict(zip(model.failures["source"], model.failures["reason"], strict=True))
    assert sorted(failures) == sorted(str(p) for p in bad_files.values())  # nothing lost, nothing invented
    assert "0 bytes" in failures[str(bad_files["zero"])]
    assert "truncated" in failures[str(bad_files["truncated"])]
    assert "not an image" in failures[str(bad_files["text"])]
    assert "decompression-bomb" in failures[str(bad_files["bomb"])]
    assert len(model.labels) + len(model.failures) == len(list(folder.iterdir()))
    with pytest.warns(RuntimeWarning, match="4 images skipped"):
        lk.create(folder, verbose=True)
    # The same through load_images: header failures come from its table, decode failures from create.
    refs = lk.load_images(folder)
    via_table = lk.create(refs, verbose=False)
    assert sorted(via_table.failures["source"]) == sorted(failures)
    assert via_table.summary(output="dict")["num_failures"] == 4


def test_all_bad_dataset(bad_files):
    folder = bad_files["zero"].parent
    with pytest.raises(ValueError, match="none of the 4 images could be read"):
        lk.create(folder, verbose=False)
    with pytest.raises(ValueError, match=r"none of the 1 images could be read.*truncated"):
        lk.create([bad_files["truncated"]], verbose=False)
    bad_files["truncated"].unlink()  # the rest fail at the header: load_images lists no image at all
    refs = lk.load_images(folder)
    assert len(refs) == 0 and len(refs.attrs["failures"]) == 3
    with pytest.raises(ValueError, match=r"dataset is empty.*3 files could not be read"):
        lk.create(refs, verbose=False)


# --------------------------------------------------------------------------- similarity graph


def test_similarity_graph(sample_model):
    graph = sample_model.similarity_graph(k=3)
    assert isinstance(graph, nx.DiGraph)
    assert sorted(graph.nodes) == list(range(80))
    assert graph.number_of_edges() == 80 * 3
    assert all(graph.out_degree(node) == 3 for node in graph.nodes)
    assert nx.number_of_selfloops(graph) == 0
    table = sample_model.similarity_graph(k=3, output_type="table")
    for src, dst, distance, rank in table[EDGE_COLUMNS].itertuples(index=False):
        assert graph.edges[src, dst] == {"distance": distance, "rank": rank}
    # Each node's edges are its query neighbours, minus itself.
    result = sample_model.query(sample_model.embeddings, k=4)
    others = result[result["rank"] > 1]
    assert table["__dst_id"].tolist() == others["reference_label"].tolist()
    np.testing.assert_array_equal(table["distance"], others["distance"])


def test_similarity_graph_table_and_aliases(sample_model):
    table = sample_model.similarity_graph(k=2, output_type="table")
    assert table.columns.tolist() == [*EDGE_COLUMNS, "__src_path", "__dst_path"]  # the files beside their ids
    paths = sample_model.references["path"].to_numpy()
    assert (table["__src_path"] == paths[table["__src_id"]]).all() and (
        table["__dst_path"] == paths[table["__dst_id"]]
    ).all()
    assert len(table) == 160
    assert table["rank"].tolist() == [1, 2] * 80
    assert (table["__src_id"] != table["__dst_id"]).all()
    assert table["__src_id"].tolist() == np.repeat(np.arange(80), 2).tolist()
    pd.testing.assert_frame_equal(sample_model.similarity_graph(k=2, output_type="SFrame"), table)
    sgraph = sample_model.similarity_graph(k=2, output_type="SGraph")
    assert isinstance(sgraph, nx.DiGraph) and sgraph.number_of_edges() == 160
    with pytest.raises(ValueError, match="output_type"):
        sample_model.similarity_graph(output_type="csv")


def test_similarity_graph_self_edges_and_radius(sample_model):
    table = sample_model.similarity_graph(k=3, include_self_edges=True, output_type="table")
    first = table[table["rank"] == 1]
    assert (first["__src_id"] == first["__dst_id"]).all() and (first["distance"] == 0.0).all()
    graph = sample_model.similarity_graph(k=3, include_self_edges=True)
    assert nx.number_of_selfloops(graph) == 80
    without = sample_model.similarity_graph(k=3, output_type="table")
    radius = float(without["distance"].quantile(0.3))
    near = sample_model.similarity_graph(k=3, radius=radius, output_type="table")
    pd.testing.assert_frame_equal(near, without[without["distance"] <= radius].reset_index(drop=True))
    everything = sample_model.similarity_graph(k=500, output_type="table")
    assert len(everything) == 80 * 79


def test_similarity_graph_with_string_labels_and_duplicates():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(6, 4)).astype(np.float32)
    vectors[4] = vectors[1]  # an exact duplicate
    table = pd.DataFrame({"name": list("abcdef"), "v": list(vectors)})
    model = lk.create(table, label="name", model=None)
    edges = model.similarity_graph(k=1, output_type="table")
    assert edges["__src_id"].tolist() == list("abcdef")
    pairs = dict(zip(edges["__src_id"], edges["__dst_id"], strict=True))
    assert pairs["b"] == "e" and pairs["e"] == "b"  # each duplicate points at the other, not itself
    assert edges.set_index("__src_id").loc[["b", "e"], "distance"].tolist() == [0.0, 0.0]


# -------------------------------------------------------------------------- extract_features


def test_extract_features(sample_model, bad_files):
    features = sample_model.extract_features(SOME, verbose=False)
    assert features.shape == (8, DEFAULT_DIM) and features.dtype == np.float32
    same_embeddings(features, sample_model.embeddings[::10])
    with pytest.warns(RuntimeWarning, match=r"truncated\.jpg could not be embedded: truncated"):
        mixed = sample_model.extract_features([PATHS[0], bad_files["truncated"], PATHS[1]], verbose=False)
    assert mixed.shape == (3, DEFAULT_DIM)
    assert np.isnan(mixed[1]).all()
    same_embeddings(mixed[[0, 2]], sample_model.embeddings[[0, 1]])


# ---------------------------------------------------------------------------- summary, repr


def test_summary_and_repr(sample_model, capsys):
    assert sample_model.summary() is None
    printed = capsys.readouterr().out
    assert "ImageSimilarityModel" in printed and DEFAULT_MODEL in printed and "euclidean" in printed
    text = sample_model.summary(output="str")
    assert text == printed.rstrip("\n")
    values = sample_model.summary(output="dict")
    assert values["model"] == DEFAULT_MODEL
    assert values["metric"] == "euclidean"
    assert values["num_references"] == 80 and values["num_features"] == DEFAULT_DIM and values["num_failures"] == 0
    assert values["method"] == "brute_force" and values["feature"] == "path"
    with pytest.raises(ValueError, match="output"):
        sample_model.summary(output="html")
    text = repr(sample_model)
    assert text.startswith("ImageSimilarityModel(")
    assert DEFAULT_MODEL in text and "euclidean" in text and "references=80" in text
    precomputed = lk.create(np.eye(3), model=None, metric="dot")
    assert "precomputed" in repr(precomputed) and "dot" in repr(precomputed)


# -------------------------------------------------------------------------------- config, GPU


def test_set_num_gpus_without_a_gpu_warns_and_uses_the_cpu(sample_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider: asking for a GPU does not fall back")
    lk.config.set_num_gpus(1)
    assert lk.config.get_num_gpus() == 1
    with pytest.warns(RuntimeWarning, match="no CUDA provider"):
        model = lk.create(SOME[:3], verbose=False, cache=False)
    same_embeddings(model.embeddings, sample_model.embeddings[[0, 10, 20]])
    lk.config.set_num_gpus(0)
    assert lk.config.execution_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("value", ["x", -2, True, 1.0, None])
def test_set_num_gpus_rejects_bad_values(value):
    before = lk.config.get_num_gpus()
    with pytest.raises(ValueError, match="num_gpus"):
        lk.config.set_num_gpus(value)
    assert lk.config.get_num_gpus() == before


# ------------------------------------------------------------------------ a local ONNX model


def test_local_onnx_file_with_preprocessing(tmp_path, sample_model):
    onnx_file = tmp_path / "my_squeezenet.onnx"
    shutil.copyfile(get_spec("squeezenet_v1.1").onnx_file(), onnx_file)
    model = lk.create(SOME, model=onnx_file, preprocessing=CAFFE.to_dict(), verbose=False)
    assert model.model_name == "onnx:my_squeezenet.onnx" and model.dim == 512
    # A local file offers only its output, the average pool of fire9: the registered network's plain descriptor.
    registered = lk.create(SOME, model="squeezenet_v1.1", descriptor="plain", verbose=False)
    same_embeddings(model.embeddings, registered.embeddings)
    result = model.query(SOME[2], k=1, verbose=False)
    assert result["reference_label"].tolist() == [2] and result["distance"].tolist() == [0.0]
    as_str = lk.create(SOME[:2], model=str(onnx_file), preprocessing=CAFFE, verbose=False)
    same_embeddings(as_str.embeddings, model.embeddings[:2])


def test_local_onnx_file_errors(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    shutil.copyfile(get_spec("squeezenet_v1.1").onnx_file(), onnx_file)
    with pytest.raises(ValueError, match="preprocessing="):
        lk.create(SOME[:2], model=onnx_file, verbose=False)
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        lk.create(SOME[:2], model=onnx_file, preprocessing={"size": (224, 224), "colour": "BGR"}, verbose=False)
    with pytest.raises(ValueError, match="resize"):
        lk.create(SOME[:2], model=onnx_file, preprocessing={"resize": "fill"}, verbose=False)
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        lk.create(SOME[:2], model=tmp_path / "absent.onnx", preprocessing=CAFFE.to_dict(), verbose=False)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        lk.create(SOME[:2], model=garbage, preprocessing=CAFFE.to_dict(), verbose=False)
    with pytest.raises(ValueError, match="only for local .onnx"):
        lk.create(SOME[:2], preprocessing=CAFFE.to_dict(), verbose=False)


def test_registry():
    assert "squeezenet_v1.1" in lk.available_models()
    spec = get_spec("squeezenet_v1.1")
    assert spec.dim == 512 and spec.preprocessing == CAFFE
    assert spec.record()["fingerprint"] == spec.fingerprint
    with pytest.raises(ValueError, match="already registered"):
        lk.register(spec)


def test_unknown_arguments_and_a_model_for_its_references_are_refused(sample_model):
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        lk.create(SAMPLES, colour="red")
    from lookalike import dedup

    with pytest.raises(TypeError, match="pass model.core"):
        dedup.find_duplicates(sample_model, threshold=0.05)


def test_the_package_has_no_import_cycle_and_no_module_reads_anothers_privates():
    result = subprocess.run([sys.executable, str(CHECKER)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 cycles, 0 private reaches, 0 other problems" in result.stdout


def test_the_architecture_check_finds_a_front_reaching_inside_a_package_and_a_search_outside_index(tmp_path):
    spec = importlib.util.spec_from_file_location("check_architecture", CHECKER)
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    package = tmp_path / "lookalike"
    shutil.copytree(Path(lk.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    with (package / "cli.py").open("a") as cli:
        cli.write("\nfrom lookalike.dedup.moves import undo  # noqa\nSHOWN = lk.store.results.write_table\n")
    with (package / "audit" / "run.py").open("a") as audit:
        audit.write("\nimport faiss  # noqa\nfrom scipy.spatial.distance import cdist  # noqa\n")
    lazy = package / "store" / "__init__.py"
    lazy.write_text(lazy.read_text().replace('"safemove": ["move_file"]', '"safemove": ["move_file", "kill_point"]'))
    known = checker.modules(tmp_path)
    found = "\n".join(checker.front_problems(known) + checker.search_problems(known) + checker.surface_problems(known))
    assert "cli.py:" in found and "imports the inner module lookalike.dedup.moves" in found
    assert "reaches the inner module lookalike.store.results" in found
    assert "run.py:" in found and "imports faiss" in found and "builds a full distance matrix" in found
    assert "kill_point from lookalike.store.safemove is lazy, not among its TYPE_CHECKING imports" in found
    assert "imports the inner module lookalike.server" not in found  # the server's modules import each other


# --------------------------------------------------------------------------------- the facade


def test_index_like_embeds_another_set_as_the_references_were(sample_model):
    other = sample_model.index_like(SOME[:3], verbose=False)
    assert other.embedding_model == sample_model.embedding_model and other.metric == sample_model.metric
    same_embeddings(other.embeddings, sample_model.embeddings[[PATHS.index(p) for p in SOME[:3]]])
    assert other.labels.tolist() == [0, 1, 2]  # its own rows, not the references'


def test_open_source_and_is_saved_model_tell_a_saved_model_from_anything_else(tmp_path, sample_model):
    from lookalike.model import open_source
    from lookalike.store import is_saved_model

    path = tmp_path / "photos.lookalike"
    sample_model.save(path)
    assert is_saved_model(path) and is_saved_model(str(path))
    assert not any(is_saved_model(s) for s in (SAMPLES, str(SAMPLES), SOME, sample_model, tmp_path / "absent"))
    assert open_source(sample_model) is sample_model
    assert open_source(path).labels.tolist() == sample_model.labels.tolist()


def test_a_model_saved_by_another_process_is_reloaded_from_where_it_was_loaded(tmp_path, sample_model):
    path = tmp_path / "photos.lookalike"
    sample_model.save(path)
    served, other = lk.load_model(path), lk.load_model(path)
    assert not served.saved_since()
    other.remove([0])
    other.save(path)
    assert served.saved_since() and len(served.reloaded().labels) == len(sample_model.labels) - 1
    with pytest.raises(ValueError, match="nothing to reload"):
        lk.create(np.eye(4, dtype=np.float32), model=None, verbose=False).reloaded()


def test_a_model_of_a_vector_column_is_queried_with_that_column_as_turi_does(tmp_path, sample_model):
    # A table holding both images and their precomputed embeddings: the model was built from the embeddings,
    # so a query with the same table must use them too, not try to embed the images (Turi's behaviour).
    table = lk.load_images(SAMPLES).head(12)
    table["deep_features"] = list(sample_model.raw_embeddings[:12])
    model = lk.create(table, feature="deep_features", model=None, verbose=False)
    assert model.feature == "deep_features"
    expected = lk.create(np.stack(table["deep_features"]), model=None, verbose=False).query(
        np.stack(table["deep_features"].head(3)), k=3, verbose=False
    )
    queried = model.query(table.head(3), k=3, verbose=False)
    # The table's paths name the references; the queries were vectors, named by no file.
    assert (queried["reference_path"] == table["path"].to_numpy()[queried["reference_label"]]).all()
    pd.testing.assert_frame_equal(queried.drop(columns="reference_path"), expected)
    model.save(tmp_path / "vectors.lookalike")
    loaded = lk.load_model(tmp_path / "vectors.lookalike")
    pd.testing.assert_frame_equal(loaded.query(table.head(3), k=3, verbose=False), queried)
