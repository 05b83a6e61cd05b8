"""The failure report: every input that was skipped, grouped by kind of reason, and written as CSV.

Reasons are the sentences the ingest stages give (``"HTTP 404 (Not Found)"``,
``"timeout (download took over 120 s)"``, ``"truncated image data"``...); a
reason's *kind* is its leading words, so a summary can say "3 HTTP 404, 1
timeout" without a second list of codes to keep in step with them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from lookalike.files import atomic_path

#: Kinds whose reasons are worded in several ways, by the leading text that marks them.
_KIND_PREFIXES = (
    ("truncated", "truncated"),
    ("timeout", "timeout"),
    ("too large", "too large"),
    ("image dimensions exceed", "too large"),
    ("unsupported url scheme", "bad URL"),
    ("not a url", "bad URL"),
    ("invalid url", "bad URL"),
    ("connection", "connection failed"),
    ("empty", "empty"),
)
_HEAD = re.compile(r"^[^(,:;]*")


def failure_kind(reason: str) -> str:
    """The kind of a failure reason: ``"HTTP 404"``, ``"timeout"``, ``"too large"``, ``"not an image"``...

    Examples
    --------
    >>> failure_kind("HTTP 503 (Service Unavailable), after 4 tries")
    'HTTP 503'
    >>> failure_kind("truncated image data")
    'truncated'
    >>> failure_kind("unsupported format (HEIC: needs pillow-heif; pip install 'lookalike[formats]' adds it)")
    'unsupported format'
    """
    lowered = reason.strip().lower()
    for prefix, kind in _KIND_PREFIXES:
        if lowered.startswith(prefix):
            return kind
    return _HEAD.match(reason.strip()).group(0).strip() or "unknown"


def summarize_failures(failures: pd.DataFrame, total: int) -> str:
    """One line: how many of ``total`` inputs were skipped, by kind, most frequent first.

    Examples
    --------
    >>> table = pd.DataFrame({"source": ["a", "b", "c"], "reason": ["HTTP 404", "HTTP 404", "timeout (no data)"]})
    >>> summarize_failures(table, 10)
    'skipped 3 of 10 inputs: 2 HTTP 404, 1 timeout'
    """
    counts = Counter(failure_kind(str(reason)) for reason in failures["reason"])
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"skipped {len(failures)} of {total} inputs" + (f": {kinds}" if kinds else "")


def write_report(failures: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the failures (``id``, ``source``, ``reason``) as CSV, atomically (beside, then renamed).

    Examples
    --------
    >>> write_report(model.failures, "photos.failures.csv")  # doctest: +SKIP
    PosixPath('photos.failures.csv')
    """
    with atomic_path(path) as temp:
        failures.to_csv(temp, index=False)
    return Path(path)
