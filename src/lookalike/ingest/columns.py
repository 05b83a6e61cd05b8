"""Which column of a table holds the images (paths, URLs, bytes, PIL images, arrays) or the embeddings."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lookalike.errors import InvalidArgument
from lookalike.ingest.download import is_url

_IMAGE_TYPES = (str, os.PathLike, bytes, bytearray, Image.Image)
#: Column names taken as the image column first when several could be.
_PREFERRED_FEATURES = ("path", "image", "url", "file", "filename")
#: How many leading values decide whether a column holds URLs.
_URL_SAMPLE = 20


def value_kind(value: Any) -> str | None:
    """'image' for something decodable, 'vector' for a 1-D numeric embedding, else None."""
    if isinstance(value, _IMAGE_TYPES):
        return "image"
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and np.issubdtype(value.dtype, np.number):
            return "vector"
        if value.ndim in (2, 3):
            return "image"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float, np.number)) for v in value):
        return "vector"
    return None


def column_kind(column: pd.Series) -> str | None:
    """The kind of a column, judged by its first non-null value."""
    values = column.dropna()
    return value_kind(values.iloc[0]) if len(values) else None


def find_feature_column(
    table: pd.DataFrame, feature: str | None, want: str | None = None, label: str | None = None
) -> str:
    """The column holding images (or vectors): ``feature`` if given, else the only candidate.

    ``want`` restricts the search to ``"image"`` or ``"vector"`` columns; the
    ``label`` column (strings that could pass for paths) is never a candidate.
    """
    if feature is not None:
        if feature not in table.columns:
            raise InvalidArgument(
                f"feature column {feature!r} is not in the dataset; its columns are {list(table.columns)}"
            )
        kind = column_kind(table[feature])
        if kind is None or (want and kind != want):
            expected = {"image": "image paths, URLs, bytes, PIL images or arrays", "vector": "1-D embedding arrays"}
            raise InvalidArgument(f"feature column {feature!r} does not hold {expected[want or 'image']}")
        return feature
    kinds = {name: column_kind(table[name]) for name in table.columns}
    candidates = [name for name, kind in kinds.items() if kind and (want is None or kind == want) and name != label]
    if not candidates:
        what = "embedding vectors" if want == "vector" else "images (paths, URLs, bytes, PIL images or arrays)"
        raise InvalidArgument(
            f"no column of the dataset holds {what}; columns are {list(table.columns)}: pass feature="
        )
    if len(candidates) > 1:
        preferred = [c for c in _PREFERRED_FEATURES if c in candidates]
        if preferred:
            return preferred[0]
        urls = [c for c in candidates if holds_urls(table[c])]
        if len(urls) == 1:
            return urls[0]
        raise InvalidArgument(f"several columns could hold the images {candidates}: pass feature= to choose one")
    return candidates[0]


def holds_urls(column: pd.Series) -> bool:
    """True when the column's leading non-null values are all http(s) URLs."""
    values = column.dropna().head(_URL_SAMPLE)
    return bool(len(values)) and all(is_url(v) for v in values)
