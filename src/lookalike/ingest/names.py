"""File names that are not valid UTF-8: kept exactly, shown escaped.

On Linux a file name is bytes. Python reads one that is not valid UTF-8 as
a ``str`` holding surrogate escapes (``os.fsdecode``), which opens the very
same file again but which pandas' Arrow strings, parquet and JSON refuse.
So such names live in object columns, are stored as bytes
(:func:`storable` / :func:`restored`, exact both ways), and are shown with
each undecodable byte as ``\\xNN`` (:func:`escaped`) wherever people read
them: tables, JSON, the page.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "escaped",
    "escaped_frame",
    "has_surrogates",
    "labels_column",
    "restored",
    "shortened",
    "storable",
    "text_column",
]


def has_surrogates(value: Any) -> bool:
    """Whether ``value`` is a str holding surrogate escapes (undecodable bytes of a file name)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def escaped(value: Any) -> Any:
    """``value`` for people: undecodable bytes as ``\\xNN``; anything else unchanged.

    >>> escaped(os.fsdecode(b"caf\\xe9.jpg"))
    'caf\\\\xe9.jpg'
    """
    if not has_surrogates(value):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def shortened(text: str, width: int, common: int = 0) -> str:
    """``text`` in at most ``width`` characters, cut in the middle where it tells least.

    The start (the folder) and the end (the file's name and extension, where
    names of a series differ) are kept. With ``common``, the length of the
    start ``text`` shares with the names shown beside it, the first character
    that differs is always kept too.

    >>> shortened("holidays/2019/IMG_20190612_141502.jpg", 24)
    'holiday…90612_141502.jpg'
    >>> shortened("IMG_20190612_1415_a1b2c3d4e5f6a7b8c9d0e1f2a3b4.jpg", 24, common=17)
    '…_a1b2c3d4e5…1f2a3b4.jpg'
    """
    if len(text) <= width:
        return text
    head = max(1, (width - 1) // 3)
    if common > head:  # the first difference lies in what the default cut takes out: keep it
        head = width - 1 - (len(text) - common)
        if head < 1:  # from the first difference on it is still too long: cut there and in its middle
            tail = (width - 2) // 2
            return "…" + text[common : common + width - 2 - tail] + "…" + text[len(text) - tail :]
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def text_column(values: Iterable[Any]) -> pd.Series:
    """A column of names: object dtype when one holds surrogate escapes (Arrow strings cannot), else pandas' own."""
    values = list(values)
    if any(has_surrogates(v) for v in values):
        return pd.Series(values, dtype=object)
    return pd.Series(values)


def labels_column(values: np.ndarray) -> Any:
    """Labels for a result table: as they are, unless text labels hold an undecodable name (then an object array).

    Only text arrays are looked at, each distinct value once, so numeric labels cost nothing.
    """
    if values.dtype.kind not in "OU" or not any(has_surrogates(v) for v in set(values.tolist())):
        return values
    return pd.Series(values.tolist(), dtype=object)


def _columns_with_surrogates(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if table[c].dtype == object and table[c].map(has_surrogates).any()]


def escaped_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with names escaped for display (JSON, CSV, printed tables); the same object when none needs it."""
    columns = _columns_with_surrogates(table)
    if not columns:
        return table
    shown = table.copy()
    for column in columns:
        shown[column] = shown[column].map(escaped)
    return shown


def storable(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``(table for parquet, columns stored as bytes)``: columns holding undecodable names become their exact bytes."""
    columns = _columns_with_surrogates(table)
    if not columns:
        return table, []
    stored = table.copy()
    for column in columns:
        stored[column] = stored[column].map(lambda v: os.fsencode(v) if isinstance(v, str) else v)
    return stored, columns


def restored(table: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """The inverse of :func:`storable`: byte columns back to the exact names."""
    for column in columns:
        if column in table.columns:
            table[column] = pd.Series(
                [os.fsdecode(v) if isinstance(v, bytes) else v for v in table[column]], index=table.index, dtype=object
            )
    return table
