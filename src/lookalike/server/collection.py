"""What the server shows of a model: references by position, their images, neighbours, duplicates, a 2-D map.

Everything costly (label lookup table, nearest-distance scale, duplicate
groups, the map) is computed on first use and kept, so the server starts at
once even on a large model.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import pandas as pd

from lookalike import dedup
from lookalike.ingest.names import escaped
from lookalike.layout import pca_2d


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can carry."""
    return value.item() if isinstance(value, np.generic) else value


class Collection:
    """A read-only view of an :class:`~lookalike.ImageSimilarityModel` addressed by reference position.

    Parameters
    ----------
    model : lookalike.ImageSimilarityModel

    Examples
    --------
    >>> view = Collection(model)  # doctest: +SKIP
    >>> view.item(0)              # doctest: +SKIP
    {'index': 0, 'label': 0, 'path': '.../dress/07cd.jpg', 'width': 400, 'height': 533}
    """

    def __init__(self, model):
        self.model = model
        self.size = int(len(model.labels))
        refs = model.references
        paths = refs[model.feature] if model.feature in refs.columns else None
        # Only string paths are image files the server may open; anything else was an in-memory image.
        self.paths = (
            np.array([v if isinstance(v, str) else None for v in paths], dtype=object) if paths is not None else None
        )
        self._sizes = {
            name: refs[name].to_numpy() if name in refs.columns and pd.api.types.is_numeric_dtype(refs[name]) else None
            for name in ("width", "height")
        }
        self._embedder_lock = threading.Lock()
        self._embedder_ready = False

    @property
    def has_images(self) -> bool:
        return self.paths is not None

    @property
    def can_query_images(self) -> bool:
        """Whether the model can embed an uploaded image (not when it was built from precomputed embeddings)."""
        return self.model.model_name is not None

    # ------------------------------------------------------------------ items
    def item(self, position: int) -> dict[str, Any]:
        """The JSON description of the reference at ``position``."""
        label = _plain(self.model.labels[position])
        out = {
            "index": int(position),
            "label": escaped(label) if isinstance(label, (int, str)) else str(label),
            # A file name that is not UTF-8 is shown with \xNN escapes (JSON cannot carry its bytes).
            "path": escaped(self.paths[position]) if self.paths is not None else None,
        }
        for name, values in self._sizes.items():
            value = values[position] if values is not None else None
            out[name] = int(value) if value is not None and not pd.isna(value) else None
        return out

    def page(self, offset: int, limit: int) -> list[dict[str, Any]]:
        return [self.item(p) for p in range(offset, min(offset + limit, self.size))]

    @functools.cached_property
    def _positions(self) -> pd.Index:
        return pd.Index(self.model.labels)

    def positions_of(self, labels: Any) -> np.ndarray:
        """Reference positions of model labels (as returned by query and similarity_graph)."""
        return self._positions.get_indexer(pd.Index(labels))

    def find_label(self, text: str) -> int | None:
        """Position of the reference whose label is ``text`` (compared as text), or None."""
        matches = np.flatnonzero(self._label_text == text)
        return int(matches[0]) if len(matches) else None

    @functools.cached_property
    def _label_text(self) -> np.ndarray:
        return np.array([str(_plain(v)) for v in self.model.labels], dtype=object)

    def image_path(self, position: int) -> str | None:
        return self.paths[position] if self.paths is not None else None

    # ------------------------------------------------------------- neighbours
    def _neighbour_items(self, table: pd.DataFrame, exclude: int | None, k: int) -> list[dict[str, Any]]:
        positions = self.positions_of(table["reference_label"])
        distances = table["distance"].to_numpy()
        if exclude is not None:
            # Without itself among the answers (ties), the reference asked one too many: [:k] drops the farthest.
            mine = positions != exclude
            positions, distances = positions[mine], distances[mine]
        return [
            {**self.item(p), "distance": float(d), "rank": rank}
            for rank, (p, d) in enumerate(zip(positions[:k], distances[:k], strict=True), 1)
        ]

    def neighbours_of(self, position: int, k: int, radius: float | None) -> list[dict[str, Any]]:
        """The ``k`` nearest other references of the reference at ``position``."""
        vector = np.asarray(self.model.embeddings[position : position + 1], dtype=np.float32)
        table = self.model.query(vector, k=k + 1, radius=radius, verbose=False)
        return self._neighbour_items(table, position, k)

    def neighbours_of_bytes(self, data: bytes, k: int, radius: float | None) -> list[dict[str, Any]]:
        """The ``k`` nearest references of an encoded image (the bytes of an upload)."""
        if not self._embedder_ready:
            # The first image query builds the ONNX session: one thread builds it, the others wait for it.
            with self._embedder_lock:
                table = self.model.query(data, k=k, radius=radius, verbose=False)
                self._embedder_ready = True
        else:
            table = self.model.query(data, k=k, radius=radius, verbose=False)
        return self._neighbour_items(table, None, k)

    # ------------------------------------------------------------- duplicates
    @functools.cached_property
    def nearest_distances(self) -> dict[str, float]:
        """Percentiles of each reference's distance to its nearest other reference."""
        if self.size < 2:
            return {"p1": 0.0, "p5": 0.0, "p50": 0.0, "max": 0.0}
        distances = self.model.similarity_graph(k=1, output_type="table")["distance"].to_numpy()
        p1, p5, p50, top = np.percentile(distances, [1, 5, 50, 100])
        return {"p1": float(p1), "p5": float(p5), "p50": float(p50), "max": float(top)}

    def default_threshold(self) -> float:
        """The dedup threshold measured for the model's network and metric, else the 5th nearest-distance percentile."""
        try:
            return dedup.default_threshold(self.model.core)
        except ValueError:  # no measured default for this network and metric
            return self.nearest_distances["p5"]

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one Collection lives as long as its app
    def duplicate_groups(
        self, threshold: float, k: int, keep: str, tiers: tuple[str, ...] | None = None
    ) -> list[list[tuple[int, bool, float, str]]]:
        """Near-duplicate groups from :func:`lookalike.dedup.find_duplicates`, largest first.

        Each group is a list of (position, is the keeper, distance to the keeper, tier), keeper first;
        with ``tiers``, only members of those tiers (and groups that keep one).
        """
        table = self.model.find_duplicates(threshold=threshold, keep=keep, k=k, tiers=tiers)
        positions = self.positions_of(table["label"])
        columns = (table["keeper"].tolist(), table["distance"].tolist(), table["tier"].tolist())
        rows = zip(positions.tolist(), *columns, strict=True)
        groups: dict[int, list[tuple[int, bool, float, str]]] = {}
        for group, row in zip(table["group"].tolist(), rows, strict=True):
            groups.setdefault(group, []).append(row)
        return [groups[number] for number in sorted(groups)]

    # -------------------------------------------------------------------- map
    @functools.cached_property
    def projection(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2) PCA coordinates of the embeddings and the variance share of each axis."""
        return pca_2d(self.model.embeddings)

    def map_sample(self, limit: int) -> np.ndarray:
        """At most ``limit`` reference positions, evenly spread over the collection."""
        if self.size <= limit:
            return np.arange(self.size)
        return np.unique(np.linspace(0, self.size - 1, limit).round().astype(np.int64))
