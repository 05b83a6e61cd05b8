"""The similarity graph at scale: every reference's k nearest neighbours, in blocks of queries.

Each block asks the model's index (exact or approximate, whichever the model
holds) for the neighbours of ``block_size`` references, so memory is bounded
by one block of results, never an n x n matrix. Edges are either gathered
into one table or streamed block by block to a parquet/CSV file, in which
case they are never all in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.results import label_type, write_blocks

if TYPE_CHECKING:
    from lookalike.model import ImageSimilarityModel

#: References whose neighbours are searched at once.
BLOCK_QUERIES = 4096


def drop_self(distances: np.ndarray, neighbours: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own position (``start + row``) from its neighbours, or, if absent, its farthest one.

    An approximate index may miss a reference's own vector, and duplicates
    tie with it at distance 0: either way each row keeps one edge fewer.
    """
    rows, width = neighbours.shape
    drop = neighbours == np.arange(start, start + rows)[:, None]
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    return distances[keep].reshape(rows, width - 1), neighbours[keep].reshape(rows, width - 1)


def neighbour_blocks(
    model: ImageSimilarityModel, k: int, include_self_edges: bool = False, block_size: int = BLOCK_QUERIES
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(start, distances, positions)`` for each block of references, in reference order.

    Row ``i`` of a block holds the ``k`` nearest references (positions) of
    reference ``start + i``, nearest first; without self edges each
    reference's own position is left out.
    """
    n = len(model.labels)
    width = k if include_self_edges else k + 1
    for start in range(0, n, block_size):
        distances, positions = model._index.search(model.embeddings[start : start + block_size], width)
        if not include_self_edges:
            distances, positions = drop_self(distances, positions, start)
        yield start, distances, positions


def edge_blocks(
    model: ImageSimilarityModel,
    k: int,
    radius: float | None = None,
    include_self_edges: bool = False,
    block_size: int = BLOCK_QUERIES,
) -> Iterator[pd.DataFrame]:
    """Edge tables ``__src_id, __dst_id, distance, rank``, one per block of source references."""
    for start, distances, positions in neighbour_blocks(model, k, include_self_edges, block_size):
        sources = model.labels[start : start + len(positions)]
        yield model._result_table(sources, distances, positions, radius, "__src_id", "__dst_id")


def edge_table(
    model: ImageSimilarityModel,
    k: int,
    radius: float | None = None,
    include_self_edges: bool = False,
    block_size: int = BLOCK_QUERIES,
) -> pd.DataFrame:
    """All edges in one DataFrame (what ``similarity_graph(output_type="table")`` returns)."""
    blocks = list(edge_blocks(model, k, radius, include_self_edges, block_size))
    if not blocks:  # no references: keep the columns
        empty = np.zeros((0, 0), np.int64)
        return model._result_table(model.labels, empty.astype(float), empty, None, "__src_id", "__dst_id")
    return pd.concat(blocks, ignore_index=True)


def edge_schema(labels: np.ndarray) -> pa.Schema:
    """The arrow schema of edge files; label columns take the labels' own type."""
    label = label_type(labels)
    return pa.schema([("__src_id", label), ("__dst_id", label), ("distance", pa.float64()), ("rank", pa.int64())])


def write_edges(
    model: ImageSimilarityModel,
    path: str | os.PathLike,
    k: int,
    radius: float | None = None,
    include_self_edges: bool = False,
    block_size: int = BLOCK_QUERIES,
) -> int:
    """Stream the similarity graph's edges to ``path`` (``.parquet`` or ``.csv``), atomically; the edge count.

    One block of edges is in memory at a time (see :mod:`lookalike.results`).

    Examples
    --------
    >>> write_edges(model, "edges.parquet", k=5)  # doctest: +SKIP
    400
    """
    blocks = edge_blocks(model, k, radius, include_self_edges, block_size)
    return write_blocks(path, blocks, edge_schema(model.labels))
