"""The failure report: every input that was skipped, as a table or records, summarised by kind, written as CSV.

Each :class:`~lookalike.errors.Failure` carries its kind (``"HTTP 404"``,
``"timeout"``, ``"truncated"``...) from where it happened, so the summary
counts kinds and never reads the reasons. Failures saved before kinds were
recorded are the one exception: :func:`legacy_kind` derives theirs, once, as
they are read back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.errors import Failure
from lookalike.ingest.names import text_column
from lookalike.store.files import atomic_path

#: The kind of a saved reason, by its leading words where the kind is not simply its first words.
_LEGACY_PREFIXES = (
    ("truncated", "truncated"),
    ("timeout", "timeout"),
    ("too large", "too large"),
    ("image dimensions exceed", "too large"),
    ("unsupported url scheme", "bad URL"),
    ("not a url", "bad URL"),
    ("invalid url", "bad URL"),
    ("connection", "connection failed"),
    ("empty", "empty"),
    ("invalid dimensions", "invalid dimensions"),
    ("an image array", "unsupported image type"),
    ("unexpected error", "unexpected error"),
    ("cannot read file", "unreadable file"),
    ("cannot read object", "unreadable object"),
    ("no path or url", "missing value"),
    ("cannot write the download cache", "cache write failed"),
)
_LEGACY_HEAD = re.compile(r"^[^(,:;]*")


def legacy_kind(reason: str) -> str:
    """The kind of a failure saved without one, from its reason: for models saved before kinds were recorded.

    Examples
    --------
    >>> legacy_kind("HTTP 503 (Service Unavailable), after 4 tries")
    'HTTP 503'
    >>> legacy_kind("truncated image data")
    'truncated'
    >>> legacy_kind("unsupported format (HEIC: needs pillow-heif; pip install 'lookalike[formats]' adds it)")
    'unsupported format'
    """
    lowered = reason.strip().lower()
    if "decompression-bomb" in lowered:  # "640000x640000 = 409,600,000,000 pixels exceeds the ... limit"
        return "too large"
    for prefix, kind in _LEGACY_PREFIXES:
        if lowered.startswith(prefix):
            return kind
    return _LEGACY_HEAD.match(reason.strip()).group(0).strip() or "unknown"


def failure_table(failures: Sequence[Failure], with_id: bool) -> pd.DataFrame:
    """``model.failures``: one row per failure, columns ``source, kind, reason``, after ``id`` when ``with_id``.

    Examples
    --------
    >>> failure_table([Failure(0, "a.jpg", "truncated", "truncated image data", id="a")], with_id=True)
      id source       kind                reason
    0  a  a.jpg  truncated  truncated image data
    """
    columns = ["id", "source", "kind", "reason"] if with_id else ["source", "kind", "reason"]
    values = {
        "id": [f.id for f in failures],
        "source": text_column(f.source for f in failures),
        "kind": [f.kind for f in failures],
        "reason": [f.reason for f in failures],
    }
    return pd.DataFrame({column: values[column] for column in columns})


def failure_record(failure: Failure, with_id: bool) -> dict[str, Any]:
    """As ``load_images`` lists a failure in ``df.attrs["failures"]``: ``id`` (``with_id``), ``path``, ``kind``, ``reason``.

    Plain values only: pandas copies ``attrs`` along with the table, and writes them into parquet files as JSON.
    """
    return {
        **({"id": failure.id} if with_id else {}),
        "path": failure.source,
        "kind": failure.kind,
        "reason": failure.reason,
    }


def failure_from_record(record: dict[str, Any]) -> Failure:
    """The failure a :func:`failure_record` holds; its row is gone from the table, so it has no position.

    A record written before kinds were recorded (and kept in a parquet file's ``attrs``) gets its kind from
    :func:`legacy_kind`.
    """
    kind = record["kind"] if "kind" in record else legacy_kind(str(record["reason"]))
    return Failure(None, record["path"], kind, record["reason"], record.get("id"))


def with_kinds(failures: pd.DataFrame) -> pd.DataFrame:
    """A saved failures table with its ``kind`` column: as it is, or derived by :func:`legacy_kind` for older models."""
    if "kind" in failures.columns:
        return failures
    table = failures.copy()
    derived = [legacy_kind(str(reason)) for reason in failures["reason"]]
    kinds = pd.Series(derived, index=failures.index, dtype=failures["reason"].dtype)  # text, stored as the reasons are
    table.insert(table.columns.get_loc("reason"), "kind", kinds)
    return table


def summarize_failures(failures: pd.DataFrame, total: int) -> str:
    """One line: how many of ``total`` inputs were skipped, by kind, most frequent first.

    Examples
    --------
    >>> table = pd.DataFrame({"source": ["a", "b", "c"], "kind": ["HTTP 404", "HTTP 404", "timeout"]})
    >>> summarize_failures(table, 10)
    'skipped 3 of 10 inputs: 2 HTTP 404, 1 timeout'
    """
    counts = failures["kind"].value_counts()
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"skipped {len(failures)} of {total} inputs" + (f": {kinds}" if kinds else "")


def write_report(failures: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the failures (``id``, ``source``, ``kind``, ``reason``) as CSV, atomically (beside, then renamed).

    Examples
    --------
    >>> write_report(model.failures, "photos.failures.csv")  # doctest: +SKIP
    PosixPath('photos.failures.csv')
    """
    with atomic_path(path) as temp:
        failures.to_csv(temp, index=False)
    return Path(path)
