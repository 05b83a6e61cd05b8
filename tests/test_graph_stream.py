"""similarity_graph in blocks: streamed parquet/CSV edges equal the in-memory table and brute force, on real photos."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import lookalike as lk
from lookalike.cli import main
from lookalike.operations.graph import edge_table, write_edges

# Distances are measured in float32 from the two rows themselves (faiss's SIMD kernels, no expansion of a
# matrix product): within float32 resolution of the float64 definition, and exactly 0 for identical rows.
FLOAT32_RESOLUTION = {"rtol": 2e-6, "atol": 2e-6}


def without_metric(written: pd.DataFrame, metric: str) -> pd.DataFrame:
    """An edges file's table once every row was checked to name the metric of its distances (a file read alone)."""
    assert written.columns[-1] == "metric" and (written["metric"] == metric).all()
    return written.drop(columns="metric")


def brute_force_edges(model, k: int, include_self: bool) -> dict[int, list[tuple[int, float]]]:
    """Every reference's k nearest (position, distance) by a dense float64 matrix (80 photos: small)."""
    v = model.embeddings.astype(np.float64)
    dense = np.sqrt(((v[:, None, :] - v[None, :, :]) ** 2).sum(-1))
    edges = {}
    for i, row in enumerate(dense):
        order = [j for j in np.lexsort((np.arange(len(row)), row)) if include_self or j != i]
        edges[i] = [(int(j), float(row[j])) for j in order[:k]]
    return edges


@pytest.mark.parametrize("include_self", [False, True])
def test_blocked_edges_match_brute_force(sample_model, include_self):
    edges = edge_table(sample_model.core, k=4, include_self_edges=include_self, block_size=7)
    expected = brute_force_edges(sample_model, 4, include_self)
    assert len(edges) == 4 * len(sample_model.labels)
    for src, group in edges.groupby("__src_id"):
        assert group["rank"].tolist() == [1, 2, 3, 4]
        assert group["__dst_id"].tolist() == [j for j, _ in expected[src]]
        np.testing.assert_allclose(group["distance"], [d for _, d in expected[src]], **FLOAT32_RESOLUTION)
        assert (src in group["__dst_id"].tolist()) == include_self


@pytest.mark.parametrize(
    ("k", "radius_quantile", "include_self"), [(5, None, False), (3, None, True), (6, 0.5, False), (2, 0.0, True)]
)
def test_streamed_parquet_equals_in_memory(sample_model, tmp_path, k, radius_quantile, include_self):
    radius = None
    if radius_quantile is not None:  # a radius that really cuts: the median edge length (or 0: self edges only)
        lengths = sample_model.similarity_graph(k=k, include_self_edges=include_self, output_type="table")["distance"]
        radius = float(np.quantile(lengths, radius_quantile))
    in_memory = sample_model.similarity_graph(k=k, radius=radius, include_self_edges=include_self, output_type="table")
    path = sample_model.similarity_graph(
        k=k, radius=radius, include_self_edges=include_self, output_type="table", path=tmp_path / "edges.parquet"
    )
    assert path == tmp_path / "edges.parquet"
    streamed = without_metric(pd.read_parquet(path), "euclidean")
    pd.testing.assert_frame_equal(streamed, in_memory, check_dtype=False)
    if radius is not None:
        assert 0 < len(streamed) < k * len(sample_model.labels)
        assert (streamed["distance"] <= radius).all()
    assert list(tmp_path.iterdir()) == [path]  # no partial file left beside it


def test_streaming_writes_one_row_group_per_block(sample_model, tmp_path):
    count = write_edges(sample_model.core, tmp_path / "edges.parquet", k=3, block_size=16)
    meta = pq.read_metadata(tmp_path / "edges.parquet")
    assert count == meta.num_rows == 3 * 80
    assert meta.num_row_groups == 5  # 80 references / 16 per block: edges were written block by block
    pd.testing.assert_frame_equal(
        without_metric(pd.read_parquet(tmp_path / "edges.parquet"), "euclidean"),
        sample_model.similarity_graph(k=3, output_type="table"),
        check_dtype=False,
    )


def test_string_labels_stream_with_their_type(sample_model, tmp_path):
    names = [f"photo-{i:03d}" for i in range(len(sample_model.labels))]
    model = lk.create(
        pd.DataFrame({"name": names, "embedding": list(sample_model.embeddings)}), label="name", model=None
    )
    model.similarity_graph(k=2, output_type="table", path=tmp_path / "edges.parquet")
    assert str(pq.read_schema(tmp_path / "edges.parquet").field("__src_id").type) == "string"
    streamed = without_metric(pd.read_parquet(tmp_path / "edges.parquet"), "euclidean")
    pd.testing.assert_frame_equal(streamed, model.similarity_graph(k=2, output_type="table"), check_dtype=False)
    assert set(streamed["__src_id"]) == set(names)


def test_stream_errors(sample_model, tmp_path):
    with pytest.raises(ValueError, match="output_type='table'"):
        sample_model.similarity_graph(k=2, path=tmp_path / "edges.parquet")
    with pytest.raises(ValueError, match=r"edges\.txt must end in \.parquet or \.csv"):
        sample_model.similarity_graph(k=2, output_type="table", path=tmp_path / "edges.txt")
    with pytest.raises(FileNotFoundError, match="missing"):
        sample_model.similarity_graph(k=2, output_type="table", path=tmp_path / "missing" / "edges.parquet")
    with pytest.raises(ValueError, match="k must be"):
        sample_model.similarity_graph(k=0, output_type="table", path=tmp_path / "edges.parquet")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_cli_graph_streams_to_file(sample_model, tmp_path, capsys, suffix):
    sample_model.save(tmp_path / "m.lookalike")
    out = tmp_path / f"edges{suffix}"
    assert main(["graph", str(tmp_path / "m.lookalike"), "-k", "5", "--radius", "70", "-o", str(out)]) == 0
    expected = sample_model.similarity_graph(k=5, radius=70.0, output_type="table")
    read = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix]
    written = without_metric(read(out), "euclidean")
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    assert f"wrote {len(expected)} edges over 80 images" in capsys.readouterr().out
