"""Turn what a user passes (folder, list, DataFrame, array, single image) into rows to embed.

This is the validation edge of lookalike: every message names the parameter,
the column or the file that is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lookalike.errors import Failure, InvalidArgument, InvalidType
from lookalike.ingest.columns import column_kind, find_feature_column, value_kind
from lookalike.ingest.decode import source_name
from lookalike.ingest.names import text_column
from lookalike.ingest.report import failure_from_record
from lookalike.ingest.sources import check_named, expand_sources, is_embeddings_file, is_table_file, read_table


def stack_vectors(values: Sequence[Any], where: str) -> np.ndarray:
    """A column of 1-D vectors -> one (n, d) float32 matrix, with a precise error for ragged rows."""
    for value in values:
        _real(value, where)
    try:
        matrix = np.stack([np.asarray(v, dtype=np.float32) for v in values])
    except ValueError:
        lengths = sorted({len(v) for v in values})
        raise InvalidArgument(
            f"{where}: embedding vectors must all have one length, found lengths {lengths[:5]}"
        ) from None
    if matrix.ndim != 2:
        raise InvalidArgument(f"{where}: embeddings must be 1-D vectors")
    return checked_matrix(matrix, where)


#: Rows checked for NaN at once: the check's temporary stays a few MiB whatever the matrix's size.
_CHECK_ROWS = 16384


def checked_matrix(matrix: np.ndarray, where: str) -> np.ndarray:
    """A 2-D array of embeddings as float32, checked for NaN and infinities a block of rows at a time.

    A float32 array in memory order is kept as it is, not copied: an ``np.load(..., mmap_mode="r")``
    of ten million embeddings stays on disk, read through the page cache.
    """
    if matrix.ndim == 2 and matrix.shape[1] == 0:
        raise InvalidArgument(f"{where}: embeddings must have at least one value each, got shape {matrix.shape}")
    matrix = np.ascontiguousarray(_real(matrix, where), dtype=np.float32)
    for start in range(0, len(matrix), _CHECK_ROWS):
        finite = np.isfinite(matrix[start : start + _CHECK_ROWS]).all(axis=1)
        if not finite.all():
            raise InvalidArgument(
                f"{where}: embedding row {start + int(np.argmin(finite))} holds NaN or infinite values"
            )
    return matrix


def _real(values: Any, where: str) -> Any:
    """``values``, refused if they are complex numbers (float32 would drop their imaginary parts without a word)."""
    if np.iscomplexobj(values):
        raise InvalidArgument(f"{where}: embeddings must be real numbers, got complex ones")
    return values


def _mapped_embeddings(path: Path) -> np.ndarray:
    """The (n, d) array of a ``.npy`` file, memory-mapped (a file larger than memory stays on disk); never a pickle."""
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{path} is not a readable .npy file of embeddings: {exc}") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise InvalidArgument(
            f"{path} must hold a 2-D (n, d) matrix of numbers, it holds {matrix.dtype} {matrix.shape}"
        )
    return matrix


@dataclass
class Rows:
    """A dataset made uniform: a table, its image (or vector) column, and the inputs ``load_images`` left out."""

    table: pd.DataFrame
    feature: str | None  # None when ``vectors`` holds the data
    vectors: np.ndarray | None = None
    failures: list[Failure] | None = None


def as_rows(
    dataset: Any, feature: str | None, vectors_only: bool, recursive: bool = True, label: str | None = None
) -> Rows:
    """Normalise ``create``'s dataset argument (folder, glob, list of paths or URLs, table file, DataFrame, 2-D array)."""
    if isinstance(dataset, np.ndarray):
        if dataset.ndim != 2 or not np.issubdtype(dataset.dtype, np.number):
            raise InvalidArgument(
                f"an array dataset must be a 2-D (n, d) matrix of embeddings, got shape {dataset.shape}"
            )
        return Rows(pd.DataFrame(index=range(len(dataset))), None, checked_matrix(dataset, "dataset"))
    if is_embeddings_file(dataset):
        matrix = _mapped_embeddings(Path(dataset))
        return Rows(pd.DataFrame(index=range(len(matrix))), None, checked_matrix(matrix, os.fspath(dataset)))
    if is_table_file(dataset):
        dataset = read_table(dataset, (label, feature))
    elif isinstance(dataset, (str, os.PathLike)) or (
        isinstance(dataset, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in dataset)
    ):
        if isinstance(dataset, (list, tuple)) and not dataset:
            raise InvalidArgument("dataset is empty: the list of paths has no entries")
        # Headers are not probed here: the decoder reads them anyway, and cached files need neither.
        return Rows(pd.DataFrame({"path": text_column(expand_sources(dataset, recursive=recursive))}), "path", None, [])
    if isinstance(dataset, pd.DataFrame):
        failed = [failure_from_record(record) for record in dataset.attrs.get("failures", [])]
        if len(dataset) == 0:
            # load_images of a folder of unreadable files
            detail = f" ({len(failed)} files could not be read, first: {failed[0]})" if failed else ""
            raise InvalidArgument(f"dataset is empty: the DataFrame has no rows{detail}")
        column = find_feature_column(dataset, feature, want="vector" if vectors_only else None, label=label)
        if column_kind(dataset[column]) == "vector":
            return Rows(dataset, None, stack_vectors(dataset[column].tolist(), f"column {column!r}"))
        return Rows(dataset, column, None, failed)
    raise InvalidType(
        "dataset must be a folder, file, glob or URL, a list of those, a table file (.csv, .tsv, .parquet, .txt), "
        "a pandas DataFrame, or a 2-D "
        f"numpy array of embeddings; got {type(dataset).__name__}"
    )


def as_query_rows(dataset: Any, feature: str | None, dim: int, label: str | None = None) -> Rows:
    """Normalise ``query``'s dataset: one image, a list of images, a DataFrame, or embeddings."""
    if isinstance(dataset, (str, os.PathLike)):
        if not Path(check_named(dataset)).exists():
            raise FileNotFoundError(f"query image not found: {dataset}")
        if Path(dataset).is_dir():  # every image in it is a query, listed as create lists a folder
            found = expand_sources(dataset)
            if not found:
                raise InvalidArgument(f"no images found in the query folder {dataset}")
            return Rows(pd.DataFrame({"path": text_column(found)}), "path")
        return Rows(pd.DataFrame({"path": text_column([os.fspath(dataset)])}), "path")
    if isinstance(dataset, (bytes, bytearray, Image.Image)):
        return Rows(pd.DataFrame({"image": [dataset]}), "image")
    if isinstance(dataset, np.ndarray):
        # Float arrays of 1 or 2 dimensions are embeddings (complex ones too, to be refused as such); a float
        # grayscale image must be HxWx1.
        if np.issubdtype(dataset.dtype, np.inexact) and dataset.ndim in (1, 2):
            if dataset.shape[-1] != dim:
                raise InvalidArgument(
                    f"query embeddings have length {dataset.shape[-1]}, but this model's have length {dim} "
                    "(a float grayscale image must be passed as HxWx1)"
                )
            matrix = dataset.reshape(-1, dim)
            if len(matrix) == 0:  # as for an empty list or DataFrame: nothing was asked, and nothing would answer
                raise InvalidArgument(f"query dataset is empty: the array of shape {dataset.shape} has no rows")
            return Rows(pd.DataFrame(index=range(len(matrix))), None, checked_matrix(matrix, "query"))
        if value_kind(dataset) == "image":
            return Rows(pd.DataFrame({"image": [dataset]}), "image")
        raise InvalidArgument(
            f"a query array must be an image (HxW or HxWxC) or embeddings of length {dim}, got shape {dataset.shape}"
        )
    if isinstance(dataset, (list, tuple)):
        if not dataset:
            raise InvalidArgument("query dataset is empty")
        kinds = {value_kind(v) for v in dataset}
        if None in kinds or len(kinds) > 1:
            bad = next(v for v in dataset if value_kind(v) is None or value_kind(v) != value_kind(dataset[0]))
            raise InvalidType(f"query list items must all be images or all embeddings; got {type(bad).__name__}")
        for value in dataset:
            if isinstance(value, (str, os.PathLike)) and not Path(value).exists():
                raise FileNotFoundError(f"query image not found: {value}")
        if kinds == {"vector"}:
            return Rows(pd.DataFrame(index=range(len(dataset))), None, stack_vectors(dataset, "query"))
        if all(isinstance(v, (str, os.PathLike)) for v in dataset) and any(Path(v).is_dir() for v in dataset):
            found = expand_sources(list(dataset))  # folders stand for the images in them
            if not found:
                raise InvalidArgument(f"no images found in the query folders {[os.fspath(v) for v in dataset]}")
            return Rows(pd.DataFrame({"image": text_column(found)}), "image")
        if all(isinstance(v, str) for v in dataset):  # paths: names that are not UTF-8 kept exactly
            return Rows(pd.DataFrame({"image": text_column(dataset)}), "image")
        return Rows(pd.DataFrame({"image": list(dataset)}), "image")
    if isinstance(dataset, pd.DataFrame):
        if len(dataset) == 0:
            raise InvalidArgument("query dataset is empty: the DataFrame has no rows")
        if feature is not None and feature not in dataset.columns:
            feature = None  # the model's own feature name does not bind a new table
        column = find_feature_column(dataset, feature, label=label)
        if column_kind(dataset[column]) == "vector":
            return Rows(dataset, None, stack_vectors(dataset[column].tolist(), f"column {column!r}"))
        return Rows(dataset, column)
    raise InvalidType(
        "query dataset must be an image path, PIL image, bytes, numpy array, a list of those, "
        f"or a pandas DataFrame; got {type(dataset).__name__}"
    )


def without_missing_labels(rows: Rows, label: str | None) -> tuple[Rows, list[Failure]]:
    """``rows`` without those whose ``label`` cell is empty, and a failure naming each (the others are indexed).

    A row is named by its index in the table (for a CSV file, 0 is the first row after the header).
    """
    if label is None or label not in rows.table.columns or not rows.table[label].isna().any():
        return rows, []
    missing = rows.table[label].isna().to_numpy()
    failures = []
    for position in np.flatnonzero(missing):
        row = rows.table.index[position]
        source = source_name(rows.table[rows.feature].iloc[position]) if rows.feature is not None else f"row {row}"
        reason = f"row {row} has no id: its {label!r} cell is empty"
        failures.append(Failure(None, source, "missing id", reason))
    vectors = rows.vectors[~missing] if rows.vectors is not None else None
    return Rows(rows.table[~missing].reset_index(drop=True), rows.feature, vectors, rows.failures), failures


def labels_of(table: pd.DataFrame, label: str | None, what: str, unique: bool = True) -> np.ndarray:
    """The label column's values, or row numbers 0..n-1 when ``label`` is None."""
    if label is None:
        return np.arange(len(table))
    if label not in table.columns:
        raise InvalidArgument(f"label column {label!r} is not in the {what}; its columns are {list(table.columns)}")
    values = table[label].to_numpy()
    if table[label].isna().any():
        raise InvalidArgument(f"label column {label!r} has missing values")
    duplicated = table[label][table[label].duplicated()]
    if unique and len(duplicated):
        raise InvalidArgument(f"label column {label!r} must be unique; {duplicated.iloc[0]!r} appears more than once")
    return values
