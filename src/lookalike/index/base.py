"""What every index is: the search protocol and the record of how it was built."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lookalike.errors import ModelFormatError

__all__ = ["MAX_EFFORT", "BuildInfo", "Index", "build_info_of"]


@dataclass
class BuildInfo:
    """How an index came to be: the ``method=`` asked for, why this method, and the recall measured.

    ``requested`` is kept so that an ``auto`` index re-chooses as the references
    change; ``recall`` (``{"k", "recall", "queries"}``) is None for exact search
    and re-measured after ``add``/``remove``.
    """

    requested: str
    reason: str | None = None
    recall: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self)


#: The largest search effort faiss takes (a C int); a saved model asking for more is damaged.
MAX_EFFORT = 2**31 - 1


def build_info_of(record: dict | None, manifest_path: str | os.PathLike) -> BuildInfo:
    """How a saved index was built, from the manifest's record of it, once each entry has the type it must have.

    Raises
    ------
    lookalike.errors.ModelFormatError
        An entry of the wrong type, or a search effort faiss cannot take: the manifest at ``manifest_path`` is damaged.
    """
    record = record or {}
    for key, types in (("method", str), ("requested", str), ("reason", str), ("spec", str), ("recall", dict)):
        if not isinstance(record.get(key), types | None):
            raise ModelFormatError(f"{manifest_path} is damaged: its index {key} is {record[key]!r}")
    effort = record.get("search_effort")
    if effort is not None and (type(effort) is not int or not 1 <= effort <= MAX_EFFORT):  # bool is no effort
        raise ModelFormatError(
            f"{manifest_path} is damaged: its search_effort {effort!r} is not an integer from 1 to {MAX_EFFORT}"
        )
    method = record.get("method") or "brute_force"
    reason = record.get("reason")
    # Models saved before "requested" was recorded say "auto: ..." in their reason.
    requested = record.get("requested") or ("auto" if (reason or "").startswith("auto") else method)
    return BuildInfo(requested, reason, record.get("recall"))


class Index(Protocol):
    """An index over ``vectors``: ``search`` with the same distance definitions whatever the backend."""

    method: str
    metric: str
    vectors: np.ndarray
    build: BuildInfo

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances (m, k) float64, positions (m, k) int64)``, nearest first."""

    def range_search(
        self, queries: np.ndarray, threshold: float, max_per_query: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lims (m + 1,), distances, positions)``: the references within ``threshold`` of each query, nearest
        first, at most ``max_per_query`` of them; query ``i``'s are ``[lims[i]:lims[i + 1]]`` (faiss's layout)."""

    def add(self, vectors: np.ndarray) -> None:
        """Append references (they take the next positions)."""

    def remove(self, positions: np.ndarray) -> None:
        """Drop the references at ``positions``; later references move up."""

    def record(self) -> dict[str, Any]:
        """What a saved model's manifest records about the index (method, build info, backend settings)."""

    def files(self) -> dict[str, np.ndarray | Callable[[Path], None]]:
        """The files a saved model holds for the index: name -> array, or function writing it (none for exact search)."""
