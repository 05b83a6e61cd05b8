"""Parquet shards of a distributed job: one row per input image, written by the actors, read by the driver.

Columns: ``id`` (position in the job's input list), ``path``, ``embedding``
(fixed-size list of float32, null for a failure), ``kind`` and ``reason``
(null when embedded), ``width``, ``height``, ``format`` and the pixel facts
(:mod:`lookalike.ingest.pixel_facts`). Plain parquet: any reader, no Ray
needed to read a job's output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.embed.batch import HEADER_COLUMNS, Embedded
from lookalike.errors import Failure
from lookalike.ingest.pixel_facts import COLUMNS as PIXEL_FACTS
from lookalike.ingest.report import legacy_kind


def schema(dim: int) -> pa.Schema:
    """The shard schema for embeddings of length ``dim``."""
    return pa.schema(
        [
            ("id", pa.int64()),
            ("path", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("kind", pa.string()),
            ("reason", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("format", pa.string()),
            *((name, pa.int64() if name.startswith("fingerprint") else pa.float32()) for name in PIXEL_FACTS),
        ]
    )


def to_table(ids: np.ndarray, paths: Sequence[str], done: Embedded, dim: int) -> pa.Table:
    """One shard's rows: ``done`` (positions into ``ids``/``paths``) as a table, embedded rows then failures."""
    failed = np.asarray([f.position for f in done.failures], dtype=np.int64)
    order = np.concatenate([done.positions, failed]).astype(np.int64)
    missing = [None] * len(failed)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(done.vectors.astype(np.float32).ravel()), dim)
    embeddings = pa.concat_arrays([vectors, pa.nulls(len(failed), pa.list_(pa.float32(), dim))])
    headers = done.headers
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(ids, dtype=np.int64)[order]),
            pa.array([str(paths[p]) for p in order], pa.string()),
            embeddings,
            pa.array([None] * len(done.positions) + [f.kind for f in done.failures], pa.string()),
            pa.array([None] * len(done.positions) + [f.reason for f in done.failures], pa.string()),
            pa.array(headers["width"].tolist() + missing, pa.int32()),
            pa.array(headers["height"].tolist() + missing, pa.int32()),
            pa.array(headers["format"].tolist() + missing, pa.string()),
            *(
                pa.array((headers[name].tolist() if name in headers else [None] * len(headers)) + missing, kind)
                for name, kind in ((name, schema(dim).field(name).type) for name in PIXEL_FACTS)
            ),
        ],
        schema=schema(dim),
    )


def read_shards(store, directory: str, dim: int) -> pa.Table:
    """Every complete shard under ``directory`` (pyarrow filesystem ``store``), one row per id.

    A shard cut short by a crash has no parquet footer and is skipped: its
    images are simply embedded again. An id found in two shards (a retried
    write) is kept once.
    """
    from pyarrow import fs

    tables = [schema(dim).empty_table()]
    for entry in store.get_file_info(fs.FileSelector(directory, allow_not_found=True)):
        if entry.type != fs.FileType.File or not entry.path.endswith(".parquet"):
            continue
        try:
            table = pq.read_table(entry.path, filesystem=store)
            if "kind" not in table.column_names:  # a shard written before failures had kinds
                kinds = [None if reason is None else legacy_kind(reason) for reason in table["reason"].to_pylist()]
                table = table.append_column("kind", pa.array(kinds, pa.string()))
            for name in PIXEL_FACTS:  # a shard written before pixel facts: they are unknown
                if name not in table.column_names:
                    table = table.append_column(name, pa.nulls(len(table), schema(dim).field(name).type))
            tables.append(table.select(schema(dim).names).cast(schema(dim)))
        except (OSError, pa.ArrowException, KeyError):  # half-written shard of a crashed run
            continue
    table = pa.concat_tables(tables)
    _, first = np.unique(table["id"].to_numpy(), return_index=True)  # sorted ids, each once
    return table.take(first)


def to_embedded(table: pa.Table, dim: int) -> Embedded:
    """Shard rows (one per id, ascending) -> :class:`Embedded` by input position."""
    ok = pc.is_null(table["reason"]).to_numpy(zero_copy_only=False)
    embedded = table.filter(pa.array(ok))
    vectors = embedded["embedding"].combine_chunks().flatten().to_numpy().astype(np.float32).reshape(-1, dim)
    failed = table.filter(pa.array(~ok))
    return Embedded(
        vectors=vectors,
        positions=embedded["id"].to_numpy().astype(np.int64),
        failures=[
            Failure(position, path, kind, reason)
            for position, path, kind, reason in zip(
                *(failed[name].to_pylist() for name in ("id", "path", "kind", "reason")), strict=True
            )
        ],
        headers=embedded.select(HEADER_COLUMNS).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get),
    )
