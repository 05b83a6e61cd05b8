"""The similarity graph at scale: every reference's k nearest neighbours, in blocks of queries.

Each block asks the references' index (exact or approximate, whichever the
model holds; :meth:`lookalike.references.core.References.neighbour_blocks`) for the neighbours of ``block_size`` references, so memory is bounded
by one block of results, never an n x n matrix. Edges are either gathered
into one table or streamed block by block to a parquet/CSV file, in which
case they are never all in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.references.core import BLOCK_QUERIES, References, as_references
from lookalike.store.results import label_type, write_blocks


def edge_blocks(
    references: References,
    k: int,
    threshold: float | None = None,
    include_self_edges: bool = False,
    block_size: int = BLOCK_QUERIES,
) -> Iterator[pd.DataFrame]:
    """Edge tables ``__src_id, __dst_id, distance, rank`` (then ``__src_path, __dst_path`` when the references
    are files), one per block of source references."""
    paths = references.path_array()
    for start, distances, positions in references.neighbour_blocks(k, include_self_edges, block_size):
        sources = references.labels[start : start + len(positions)]
        yield references.result_table(
            sources,
            distances,
            positions,
            threshold,
            "__src_id",
            "__dst_id",
            paths=paths,
            query_paths=None if paths is None else paths[start : start + len(positions)],
            path_columns=PATH_COLUMNS,
        )


#: The columns naming each edge's two files, beside Turi's ``__src_id, __dst_id`` (row numbers, or the labels).
PATH_COLUMNS = ("__src_path", "__dst_path")


def edge_table(
    references: References,
    k: int,
    threshold: float | None = None,
    include_self_edges: bool = False,
    block_size: int = BLOCK_QUERIES,
) -> pd.DataFrame:
    """All edges in one DataFrame (what ``similarity_graph(output_type="table")`` returns)."""
    references = as_references(references)
    blocks = list(edge_blocks(references, k, threshold, include_self_edges, block_size))
    if not blocks:  # no references: keep the columns
        empty = np.zeros((0, 0), np.int64)
        paths = references.path_array()
        return references.result_table(
            references.labels,
            empty.astype(float),
            empty,
            None,
            "__src_id",
            "__dst_id",
            paths=paths,
            query_paths=paths,
            path_columns=PATH_COLUMNS,
        )
    return pd.concat(blocks, ignore_index=True)


def edge_schema(references: References) -> pa.Schema:
    """The arrow schema of edge files; label columns take the labels' own type, the files' paths are strings."""
    label = label_type(references.labels)
    fields = [("__src_id", label), ("__dst_id", label), ("distance", pa.float64()), ("rank", pa.int64())]
    if references.path_array() is not None:
        fields += [(name, pa.string()) for name in PATH_COLUMNS]
    return pa.schema(fields)


def write_edges(
    references: References,
    path: str | os.PathLike,
    k: int,
    threshold: float | None = None,
    include_self_edges: bool = False,
    block_size: int = BLOCK_QUERIES,
) -> int:
    """Stream the similarity graph's edges to ``path`` (``.parquet`` or ``.csv``), atomically; the edge count.

    One block of edges is in memory at a time (see :mod:`lookalike.store.results`); each row also carries the
    ``metric`` its distance is in.

    Examples
    --------
    >>> write_edges(model.core, "edges.parquet", k=5)  # doctest: +SKIP
    400
    """
    references = as_references(references)
    blocks = edge_blocks(references, k, threshold, include_self_edges, block_size)
    return write_blocks(path, blocks, edge_schema(references), metric=references.metric)
