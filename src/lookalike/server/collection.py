"""What the server shows of a model: references by position, their images, neighbours, duplicates, a 2-D map.

Everything costly (label lookup table, nearest-distance scale, duplicate
groups, the map) is computed on first use and kept, so the server starts at
once even on a large model.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import threading
from typing import Any

import numpy as np
import pandas as pd

from lookalike import dedup
from lookalike.errors import InvalidArgument
from lookalike.explore import MapLayout
from lookalike.explore import compute as compute_layout
from lookalike.ingest import escaped
from lookalike.server.thumbnails import file_version

#: Most references the map lays out with t-SNE on a first request (about a minute on 2 cores); above, it shows
#: PCA until ``lookalike map MODEL`` has saved the t-SNE map with the model.
TSNE_ON_REQUEST = 20_000
#: The map can be coloured by a column of at most this many distinct values (or of numbers).
MAX_CATEGORIES = 50
#: Colourings that are not columns of the references: k-means clusters, and the folder of each image file.
CLUSTER, FOLDER = "cluster", "folder"


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
        self._decisions_version = 0  # part of the duplicate groups' cache key: a decision can regroup them
        self._finders: dict[tuple[float, int], Any] = {}  # candidates and verdicts, per threshold and k
        self._finders_lock = threading.Lock()
        self._map_lock = threading.Lock()
        self._maps: dict[str, MapLayout] = {}
        #: The report of ``model.audit()``, computed once for these references (on the first request).
        self.audit: Any = None
        self.audit_lock = threading.Lock()

    @property
    def has_images(self) -> bool:
        return self.paths is not None

    @property
    def can_query_images(self) -> bool:
        """Whether the model can embed an uploaded image (not when it was built from precomputed embeddings)."""
        return self.model.model_name is not None

    # ------------------------------------------------------------------ items
    def label(self, position: int) -> int | str:
        """The label of the reference at ``position``, as JSON can carry it."""
        label = _plain(self.model.labels[position])
        return escaped(label) if isinstance(label, (int, str)) else str(label)

    def item(self, position: int) -> dict[str, Any]:
        """The JSON description of the reference at ``position``."""
        out = {
            "index": int(position),
            "label": self.label(position),
            # A file name that is not UTF-8 is shown with \xNN escapes (JSON cannot carry its bytes).
            "path": escaped(self.paths[position]) if self.paths is not None else None,
            "version": self.version(position),
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

    def version(self, position: int) -> str | None:
        """The :func:`~lookalike.server.thumbnails.file_version` of the reference's file, for its thumbnail's address."""
        path = self.image_path(position)
        return file_version(path) if path is not None else None

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

    def decisions_changed(self) -> None:
        self._decisions_version += 1

    def decision_of(self, position: int) -> str | None:
        """The pending decision on the reference's file: "keep", "discard" or None."""
        path = self.image_path(position)
        return self.model.decisions.state_of(path) if path is not None else None

    def duplicate_groups(
        self, threshold: float, k: int, keep: str, tiers: tuple[str, ...] | None = None
    ) -> tuple[list[dedup.Listed], dict[str, np.ndarray]]:
        """Copy groups (and their look-alikes) from :func:`lookalike.dedup.find_duplicates`, largest first, with the
        decisions recorded so far, and the per-reference facts (``bytes``, ``mtime``) their members are shown with
        (:meth:`group_members`).

        With ``tiers``, only members of those tiers (and groups that keep one). Candidates and verdicts are kept per
        threshold: a decision regroups only what it touches, and a page converts only the groups it shows.
        """
        return self._groups(threshold, k, keep, tiers, self._decisions_version)

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one Collection lives as long as its app
    def _groups(
        self, threshold: float, k: int, keep: str, tiers: tuple[str, ...] | None, version: int
    ) -> tuple[list[dedup.Listed], dict[str, np.ndarray]]:
        with self._finders_lock:
            first = (threshold, k) not in self._finders
            if first:
                self._finders[(threshold, k)] = self.model.duplicate_finder(threshold=threshold, k=k)
            finder = self._finders[(threshold, k)]
            listed = finder.listed(keep=keep, tiers=tiers, decisions=self.model.decisions), finder.facts(keep)
            if first:
                with contextlib.suppress(OSError):  # on a read-only disk the next explorer searches them again
                    self.model.save_candidates()
                # A finder over 10,000 photos holds millions of objects (verdicts, pairs, layouts) that live as
                # long as the app: each full collection walked them all, 0.18 s of one decision's regrouping in
                # about one in 40. Kept out of the collector's reach, a decision waits for its own work alone.
                gc.collect()
                gc.freeze()
            return listed

    @staticmethod
    def group_members(group: dedup.Listed, facts: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Each member of a listed group (keeper first): ``position, keeper, action, tier, matched, similar_to_group,
        reason, distance``, and ``bytes`` and ``mtime`` where known."""
        members = []
        for number, (position, row, distance) in enumerate(
            zip(group.members, group.rows, group.distances.tolist(), strict=True)
        ):
            member = {"position": position, "keeper": number == 0, "distance": distance, **row}
            for name in ("bytes", "mtime"):
                if name in facts:
                    member[name] = facts[name][position].item()
            members.append(member)
        return members

    @functools.cached_property
    def calibration(self) -> Any:
        """What each threshold finds of copies of the collection's own photos, and links by mistake (computed once)."""
        return self.model.calibrate_duplicates()

    # -------------------------------------------------------------------- map
    def map_layout(self, method: str) -> MapLayout:
        """The map for ``method`` ("auto", "tsne", "pca"): the one saved with the model while it still covers
        the references, else computed on this first request and kept (by the model too, for ``auto``/``tsne``)."""
        with self._map_lock:  # one computation, however many requests wait for it
            if method not in self._maps:
                if method == "pca":  # a look at the principal axes: never displaces the model's own map
                    layout = compute_layout(self.model.core, "pca", previous=self.model.map)
                else:
                    layout = self.model.compute_map(method, verbose=False, tsne_limit=TSNE_ON_REQUEST)
                self._maps[method] = layout
            return self._maps[method]

    def map_sample(self, limit: int) -> np.ndarray:
        """At most ``limit`` reference positions, evenly spread over the collection."""
        if self.size <= limit:
            return np.arange(self.size)
        return np.unique(np.linspace(0, self.size - 1, limit).round().astype(np.int64))

    @functools.cached_property
    def colourings(self) -> dict[str, str]:
        """What the map can be coloured by, and how: ``"category"`` or ``"number"``, in the order to offer them.

        The k-means clusters, the images' folders, and the references' columns
        of numbers or of at most :data:`MAX_CATEGORIES` distinct values (the
        paths themselves, and other columns of names, are not colours).
        """
        kinds = {CLUSTER: "category"}
        if self.paths is not None and len(set(self._folders)) <= MAX_CATEGORIES:
            kinds[FOLDER] = "category"
        for name, column in self.model.references.items():
            if (
                name in kinds
                or name == self.model.feature
                or not isinstance(name, str)
                or name.startswith("fingerprint")
            ):
                continue  # paths and copy fingerprints name things, they measure nothing
            if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
                kinds[name] = "number"
            elif column.nunique(dropna=False) <= MAX_CATEGORIES:
                kinds[name] = "category"
        return kinds

    @functools.cached_property
    def _folders(self) -> list[str | None]:
        return [os.path.basename(os.path.dirname(p)) if p else None for p in self.paths]

    @functools.lru_cache(maxsize=32)  # noqa: B019 - one Collection lives as long as its app
    def _categories(self, column: str) -> tuple[np.ndarray, list[str], list[int]]:
        """(category number of every reference, category names, their counts), the most common category first."""
        values = pd.Series(self._folders if column == FOLDER else self.model.references[column], dtype=object)
        names = values.map(lambda v: "(none)" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
        counts = names.value_counts(sort=False)
        order = sorted(counts.index, key=lambda name: (-counts[name], name))
        codes = pd.Categorical(names, categories=order).codes.astype(np.int64)
        return codes, [escaped(name) for name in order], [int(counts[name]) for name in order]

    def check_colouring(self, column: str) -> str:
        """``column`` if the map can be coloured by it, else an InvalidArgument naming those it can."""
        if column not in self.colourings:
            offered = ", ".join(self.colourings)
            raise InvalidArgument(f"the map cannot be coloured by {column!r}: choose one of {offered}")
        return column

    def map_colours(self, column: str, positions: np.ndarray, layout: MapLayout) -> dict[str, Any]:
        """The colouring of the points at ``positions`` by ``column`` (see :attr:`colourings`)."""
        kind = self.colourings[self.check_colouring(column)]
        if column == CLUSTER:
            return {
                "column": column,
                "kind": kind,
                "values": layout.clusters[positions].tolist(),
                "categories": [f"cluster {number + 1}" for number in range(layout.cluster_count)],
                "counts": np.bincount(layout.clusters, minlength=layout.cluster_count).tolist(),
            }
        if kind == "category":
            codes, names, counts = self._categories(column)
            return {
                "column": column,
                "kind": kind,
                "values": codes[positions].tolist(),
                "categories": names,
                "counts": counts,
            }
        values = pd.to_numeric(self.model.references[column], errors="coerce").to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        return {
            "column": column,
            "kind": kind,
            "values": [float(v) if math.isfinite(v) else None for v in values[positions]],
            "min": float(finite.min()) if len(finite) else None,
            "max": float(finite.max()) if len(finite) else None,
        }
