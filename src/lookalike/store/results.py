"""Result tables on disk (similarity graphs, matched pairs): streamed block by block, written atomically.

A file appears only when complete (written beside it, then renamed), so an
interrupted run never leaves a truncated file that looks whole; parquet and
CSV are written one block at a time, so a result larger than memory is fine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.errors import InvalidArgument
from lookalike.ingest.names import escaped_frame
from lookalike.store.files import atomic_path

#: Files results can be streamed to, by suffix.
STREAM_SUFFIXES = (".parquet", ".csv")
#: Files results can be written to at all (JSON is written whole).
TABLE_SUFFIXES = (*STREAM_SUFFIXES, ".json", ".jsonl")


def label_type(labels: np.ndarray) -> pa.DataType:
    """The arrow type of a column of labels (row numbers, strings...); string for an empty or all-null column."""
    found = pa.array(labels).type if len(labels) else pa.int64()
    return pa.string() if pa.types.is_null(found) else found


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...] = STREAM_SUFFIXES) -> Path:
    """``path`` as a Path, if results can be written there (a known suffix, an existing folder)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        listed = ", ".join(suffixes[:-1]) + " or " + suffixes[-1]
        raise InvalidArgument(f"output {path} must end in {listed}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of the output file does not exist: {path.parent}")
    return path


def with_metric(table: pd.DataFrame, metric: str | None) -> pd.DataFrame:
    """``table`` with a ``metric`` column (the distances' metric), so that a file read alone says what they mean."""
    return table if metric is None else table.assign(metric=metric)


def write_blocks(
    path: str | os.PathLike, blocks: Iterable[pd.DataFrame], schema: pa.Schema, metric: str | None = None
) -> int:
    """Stream ``blocks`` (DataFrames with ``schema``'s columns) to ``path`` (.parquet or .csv); the row count.

    With ``metric``, every row also carries a ``metric`` column naming it.

    Examples
    --------
    >>> blocks = (pd.DataFrame({"x": [i, i + 1]}) for i in (0, 2))
    >>> write_blocks("rows.parquet", blocks, pa.schema([("x", pa.int64())]))  # doctest: +SKIP
    4
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = check_output(path, STREAM_SUFFIXES)
    if metric is not None:
        schema = schema.append(pa.field("metric", pa.string()))
    count = 0
    with atomic_path(path) as partial:
        writer = (
            pq.ParquetWriter(partial, schema) if path.suffix.lower() == ".parquet" else pcsv.CSVWriter(partial, schema)
        )
        with writer:
            for block in blocks:
                block = with_metric(escaped_frame(block), metric)
                writer.write_table(pa.Table.from_pandas(block, schema=schema, preserve_index=False))
                count += len(block)
    return count


def json_records(table: pd.DataFrame, metric: str | None = None) -> list[dict]:
    """``table``'s rows as JSON-ready dicts (plain Python values, NaN as None, names escaped), with ``metric``."""
    # pandas' own JSON turns each value into plain JSON (numpy scalars, NaN, timestamps) but escapes every
    # slash of a path ("a\/b.jpg"): read back, its values are written again by json.dumps, which does not.
    return json.loads(with_metric(escaped_frame(table), metric).to_json(orient="records"))


def write_table(path: str | os.PathLike, table: pd.DataFrame, metric: str | None = None) -> None:
    """Write one DataFrame to ``path`` (.parquet, .csv, .json or .jsonl, by suffix), atomically; with ``metric``,
    every row carries a ``metric`` column naming it."""
    path = check_output(path, TABLE_SUFFIXES)
    suffix = path.suffix.lower()
    if suffix in STREAM_SUFFIXES:
        write_blocks(path, [table], pa.Schema.from_pandas(table, preserve_index=False), metric)
        return
    records = json_records(table, metric)
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8") as out:
        if suffix == ".jsonl":
            out.writelines(json.dumps(record) + "\n" for record in records)
        else:
            json.dump(records, out)


def count_rows(path: str | os.PathLike) -> int:
    """Rows of a .parquet (from its metadata) or .csv file (streamed)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return pq.read_metadata(path).num_rows
    with pcsv.open_csv(path) as reader:
        return sum(batch.num_rows for batch in reader)
