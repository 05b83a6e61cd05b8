"""What every index is: the search protocol and the record of how it was built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["BuildInfo", "Index"]


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


class Index(Protocol):
    """An index over ``vectors``: ``search`` with the same distance definitions whatever the backend."""

    method: str
    metric: str
    vectors: np.ndarray
    build: BuildInfo

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances (m, k) float64, positions (m, k) int64)``, nearest first."""

    def add(self, vectors: np.ndarray) -> None:
        """Append references (they take the next positions)."""

    def remove(self, positions: np.ndarray) -> None:
        """Drop the references at ``positions``; later references move up."""

    def record(self) -> dict[str, Any]:
        """What a saved model's manifest records about the index (method, build info, backend settings)."""

    def files(self) -> dict[str, np.ndarray | Callable[[Path], None]]:
        """The files a saved model holds for the index: name -> array, or function writing it (none for exact search)."""
