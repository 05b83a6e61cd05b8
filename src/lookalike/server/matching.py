"""A second set matched one to one with the served model, for the explorer's Match view.

The pairs come from ``lookalike.match(model, other, threshold=T, one_to_one=True)``, computed
once by whoever starts the server (``lookalike serve MODEL --match SET``). A page may ask for
any threshold up to ``T``: the one-to-one pairing takes the closest pairs first, so the pairs
it takes at a smaller threshold are exactly those of the pairing at ``T`` within it, and the
images left unmatched there are the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lookalike.server.collection import Collection


class MatchedSet:
    """The other set (a model of its images) and the one-to-one pairs of the served model's references with it.

    Parameters
    ----------
    other : lookalike.ImageSimilarityModel
        The second set, as a model (its images are shown; it is never searched here).
    pairs : pandas.DataFrame
        ``lookalike.match(served, other, threshold=threshold, one_to_one=True)``.
    threshold : float
        The threshold the pairs were found at: the largest a page may ask for.
    """

    def __init__(self, other: Any, pairs: pd.DataFrame, threshold: float):
        self.other = Collection(other)
        self.threshold = float(threshold)
        paired = pairs["a_label"].notna() & pairs["b_label"].notna()
        self._pairs = pairs[paired].sort_values(["distance", "a_label", "b_label"], kind="stable")
        self._b_positions = self.other.positions_of(self._pairs["b_label"]) if len(self._pairs) else np.empty(0, int)

    def page(self, view: Collection, threshold: float, show: str, offset: int, limit: int) -> dict[str, Any]:
        """The pairs within ``threshold`` (closest first), or the references of one side left unmatched there."""
        within = self._pairs["distance"].to_numpy() <= threshold
        a_positions = view.positions_of(self._pairs["a_label"][within])
        b_positions = self._b_positions[within]
        unmatched_a = np.setdiff1d(np.arange(view.size), a_positions)
        unmatched_b = np.setdiff1d(np.arange(self.other.size), b_positions)
        if show == "pairs":
            distances = self._pairs["distance"].to_numpy()[within]
            rows = [
                {"a": view.item(int(a)), "b": self.other.item(int(b)), "distance": float(d)}
                for a, b, d in zip(a_positions, b_positions, distances, strict=True)
            ]
        elif show == "unmatched-a":
            rows = [{"a": view.item(int(a)), "b": None, "distance": None} for a in unmatched_a]
        else:
            rows = [{"a": None, "b": self.other.item(int(b)), "distance": None} for b in unmatched_b]
        return {
            "threshold": threshold,
            "max_threshold": self.threshold,
            "pairs": int(within.sum()),
            "unmatched_a": int(len(unmatched_a)),
            "unmatched_b": int(len(unmatched_b)),
            "show": show,
            "total": len(rows),
            "offset": offset,
            "items": rows[offset : offset + limit],
        }
