"""The indexed references: what every operation (graph, dedup, match, evaluate, verify, export) works on.

:class:`References` holds the references' labels and table, their raw
embeddings (the network's output), the projection and projected embeddings,
the index over them, and the embedding spec that queries must be embedded
with. It keeps these in step as references are added and removed, and
answers searches with arrays. The operations take a ``References`` (or plain
arrays); only :mod:`lookalike.model` builds one from user input, and nothing
here imports it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from lookalike.embed.extractor import BATCH_SIZE, Embedder
from lookalike.embed.registry import ModelSpec, Preprocessing, get_spec
from lookalike.errors import Failure, InvalidArgument, InvalidType
from lookalike.index import ExactIndex, build_index, check_metric
from lookalike.index.exact import MAX_PER_QUERY
from lookalike.index.factory import after_change
from lookalike.index.rows import appended, drop_self, without
from lookalike.ingest.names import labels_column
from lookalike.ingest.tables import Rows
from lookalike.references.projection import Projection

T = TypeVar("T")

__all__ = ["BLOCK_QUERIES", "References", "as_references", "spec_for_record"]

#: References whose neighbours are searched at once by :meth:`References.neighbour_blocks`.
BLOCK_QUERIES = 4096


def spec_for_record(record: dict) -> ModelSpec:
    """The registry spec matching a saved model's embedding-model record, or a clear error."""
    name = record["name"]
    if name.startswith("onnx:"):
        spec = get_spec(record["source"], Preprocessing.from_dict(record["preprocessing"]))
    else:
        try:
            spec = get_spec(name)
        except ValueError:
            raise InvalidArgument(f"this model was built with {name!r}, which this lookalike does not know") from None
    spec = spec.with_descriptor(record["descriptor"]).with_precision(record["precision"])
    if spec.fingerprint != record.get("fingerprint"):
        raise InvalidArgument(
            f"this model's embeddings were made by {name!r} with fingerprint {record.get('fingerprint')}, but "
            f"{name!r} here has fingerprint {spec.fingerprint} (other weights or preprocessing): its query "
            "embeddings would not be comparable. Rebuild the model with this version."
        )
    return spec


def as_references(value: Any) -> References:
    """``value``, checked to be References (the operations take a model's ``core``, not the model)."""
    if isinstance(value, References):
        return value
    hint = ": pass model.core (or use the model's own method)" if hasattr(value, "core") else ""
    raise InvalidType(f"expected a model's references (model.core), got {type(value).__name__}{hint}")


def _shown(labels: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in labels[:limit].tolist())
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


class References:
    """The references of a model: labels, table, raw and projected embeddings, index and embedding spec.

    Parameters
    ----------
    raw_embeddings : numpy.ndarray
        (n, d) float32: each reference's embedding as the network gave it.
    labels : numpy.ndarray
        The label of each reference (unique).
    table : pandas.DataFrame
        One row per reference: the image column (paths) and metadata.
    metric : {"euclidean", "cosine", "dot"}
    spec : ModelSpec, optional
        The network, preprocessing and descriptor; None for precomputed embeddings.
    spec_record : dict, optional
        A saved model's record of its spec (resolved to a spec on first use).
    projection : Projection, optional
        The fitted whitening or LDA applied to every embedding.
    embeddings, index : optional
        The projected embeddings and their index, when already built (a loaded model).
    label_column, feature_column : str, optional
        The dataset's label column (None: row numbers) and the column the
        references came from (Turi's ``feature``): image paths or other
        images, or precomputed embeddings.
    roots : tuple of str
        The folders (resolved) the references' files were indexed from: no
        file action ever touches a file outside them. Empty for URLs and
        tables, whose files are never moved.
    """

    def __init__(
        self,
        raw_embeddings: np.ndarray,
        labels: np.ndarray,
        table: pd.DataFrame,
        metric: str,
        *,
        spec: ModelSpec | None = None,
        spec_record: dict | None = None,
        projection: Projection | None = None,
        embeddings: np.ndarray | None = None,
        index: Any = None,
        method: str = "auto",
        label_column: str | None = None,
        feature_column: str | None = None,
        batch_size: int = BATCH_SIZE,
        roots: tuple[str, ...] = (),
    ):
        self.metric = check_metric(metric)
        self.roots = tuple(roots)
        self.raw_embeddings = raw_embeddings
        self.projection = projection
        if embeddings is None:
            embeddings = raw_embeddings if projection is None else projection.apply(raw_embeddings)
        self.embeddings = embeddings
        self.labels = np.asarray(labels)
        self.table = table
        self.label_column = label_column
        self.feature_column = feature_column
        self.batch_size = batch_size
        self.spec_record = spec_record or (spec.record() if spec else None)
        self._spec = spec
        self._embedder: Embedder | None = None
        self.index = index if index is not None else build_index(embeddings, self.metric, method)
        self._derived: dict[Hashable, Any] = {}
        #: How many times the references changed (appended, removed, replaced, re-projected, new columns).
        self.changes = 0

    def __len__(self) -> int:
        return len(self.labels)

    def _changed(self) -> None:
        self._derived.clear()
        self.changes += 1

    def derived_of(self, kind: str) -> dict[tuple, Any]:
        """What :meth:`derived` holds under keys ``(kind, ...)``."""
        return {key: value for key, value in self._derived.items() if isinstance(key, tuple) and key[:1] == (kind,)}

    def remember(self, key: Hashable, value: Any) -> None:
        """Hold ``value`` as what :meth:`derived` computes for ``key`` (read back from a saved model)."""
        self._derived[key] = value

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, computed once while these references stay as they are: what is derived from all of them
        (dedup's candidate pairs) is not derived again by a second run over the same model. Any change (appended,
        removed, replaced, re-projected, new columns) drops it."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    # ---------------------------------------------------------------- embedding
    @property
    def model_name(self) -> str | None:
        """Name of the embedding network, or None for precomputed embeddings."""
        return self.spec_record["name"] if self.spec_record else None

    @property
    def dim(self) -> int:
        """Length of the indexed (projected) embeddings."""
        return int(self.embeddings.shape[1])

    @property
    def input_dim(self) -> int:
        """Length of the raw embeddings that queries given as vectors must have."""
        return int(self.raw_embeddings.shape[1])

    @property
    def spec(self) -> ModelSpec | None:
        """The network, preprocessing and descriptor the references were embedded with; None for precomputed ones."""
        if self._spec is None and self.spec_record is not None:
            self._spec = spec_for_record(self.spec_record)
        return self._spec

    @property
    def embedder(self) -> Embedder:
        """The extractor that embeds queries exactly as the references were (built once)."""
        spec = self.spec
        if spec is None:
            raise InvalidArgument(
                "this model was built from precomputed embeddings (model=None): query it with "
                f"embeddings of length {self.input_dim}, not images"
            )
        if self._embedder is None:
            self._embedder = Embedder(spec)
        return self._embedder

    @property
    def paths(self) -> list | None:
        """Each reference's image path (the feature column as kept), or None when they did not come from files."""
        if self.feature_column is None or self.feature_column not in self.table.columns:
            return None
        return self.table[self.feature_column].tolist()

    def file_paths(self) -> list[str | None]:
        """Each reference's file path (from the image column, or a ``path`` column), else None."""
        for column in (self.feature_column, "path"):
            if column in self.table.columns and self.table[column].map(lambda v: isinstance(v, str)).all():
                return self.table[column].tolist()
        return [None] * len(self)

    def path_array(self) -> np.ndarray | None:
        """:meth:`file_paths` as an object array for result tables, or None when the references are not files."""
        paths = self.file_paths()
        return np.array(paths, dtype=object) if len(paths) and paths[0] is not None else None

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Raw embeddings -> the indexed space (the projection, if any)."""
        return raw if self.projection is None else self.projection.apply(raw)

    def embed(
        self, rows: Rows, verbose: bool, what: str, skipped: str = "skipped"
    ) -> tuple[np.ndarray, np.ndarray, list[Failure]]:
        """Raw embeddings of normalised query rows: ``(vectors, positions embedded, failures)``.

        Each unreadable image is left out with a warning: "<what> image <name> <skipped>: <reason>".
        """
        if rows.vectors is not None:
            if rows.vectors.shape[1] != self.input_dim:
                raise InvalidArgument(
                    f"{what} embeddings have length {rows.vectors.shape[1]}, but this model's "
                    f"({self.model_name or 'precomputed'}) have length {self.input_dim}"
                )
            return rows.vectors, np.arange(len(rows.vectors)), []
        result = self.embedder.extract(
            rows.table[rows.feature].tolist(), batch_size=self.batch_size, verbose=verbose, facts=False
        )
        for failure in result.failures:
            warnings.warn(f"{what} image {failure.source} {skipped}: {failure.reason}", RuntimeWarning, stacklevel=3)
        return result.embeddings, result.ok, result.failures

    # ------------------------------------------------------------------- search
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest references of each (projected) vector: ``(distances, positions)``, nearest first."""
        return self.index.search(vectors, k)

    def radius_neighbors(
        self, vectors: np.ndarray, threshold: float, max_per_query: int = MAX_PER_QUERY
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The references within ``threshold`` of each (projected) vector, nearest first, at most
        ``max_per_query`` each: ``(lims, distances, positions)``, vector ``i``'s at ``[lims[i]:lims[i + 1]]``."""
        return self.index.range_search(vectors, threshold, max_per_query)

    def exact_index(self, metric: str | None = None) -> Any:
        """The model's index when it is exact in ``metric``, else an exact index over the embeddings."""
        metric = self.metric if metric is None else metric
        if metric == self.metric and self.index.method == "brute_force":
            return self.index
        return ExactIndex(self.embeddings, metric)

    def neighbour_blocks(
        self, k: int, include_self: bool = False, block_size: int = BLOCK_QUERIES
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(start, distances, positions)`` for each block of references, in reference order.

        Row ``i`` of a block holds the ``k`` nearest references of reference
        ``start + i``, nearest first; without ``include_self`` each
        reference's own position is left out. Memory is one block of
        results, never an n x n matrix.
        """
        width = k if include_self else k + 1
        for start in range(0, len(self), block_size):
            distances, positions = self.search(self.embeddings[start : start + block_size], width)
            if not include_self:
                distances, positions = drop_self(distances, positions, start)
            yield start, distances, positions

    def result_table(
        self,
        query_labels: np.ndarray,
        distances: np.ndarray,
        positions: np.ndarray,
        threshold: float | None = None,
        src: str = "query_label",
        dst: str = "reference_label",
        inliers: np.ndarray | None = None,
        *,
        paths: np.ndarray | None = None,
        query_paths: np.ndarray | None = None,
        path_columns: tuple[str, str] = ("query_path", "reference_path"),
    ) -> pd.DataFrame:
        """Search results as Turi's table: ``src, dst, distance, rank`` (and ``inliers``), within ``threshold``.

        With ``paths`` (:meth:`path_array`, computed once by the caller) each
        reference's file follows in ``path_columns[1]``; with ``query_paths``,
        each query's file in ``path_columns[0]``: the files, not only row numbers.
        """
        m, k = positions.shape
        table = pd.DataFrame(
            {
                src: labels_column(np.repeat(query_labels, k)),
                dst: labels_column(self.labels[positions.ravel()] if k else self.labels[:0]),
                "distance": distances.ravel(),
                "rank": np.tile(np.arange(1, k + 1), m),
            }
        )
        if inliers is not None:
            table["inliers"] = inliers.ravel()
        if query_paths is not None:
            table[path_columns[0]] = labels_column(np.repeat(np.asarray(query_paths, dtype=object), k))
        if paths is not None:
            table[path_columns[1]] = labels_column(paths[positions.ravel()] if k else paths[:0])
        if threshold is not None:
            table = table[table["distance"] <= threshold].reset_index(drop=True)
        return table

    # ------------------------------------------------------------------ changes
    def append(self, other: References, rows: np.ndarray | None = None) -> int:
        """Append ``other``'s references (all, or those at ``rows``), embedded as these were; how many.

        The index is updated, not rebuilt. Labels continue the numbering when
        the references have no label column, and must be new otherwise.
        """
        rows = np.arange(len(other)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return 0
        if other.input_dim != self.input_dim:
            raise InvalidArgument(
                f"added embeddings have length {other.input_dim}, but this model's "
                f"({self.model_name or 'precomputed'}) have length {self.input_dim}"
            )
        labels = other.labels[rows]
        if self.label_column is None:
            start = int(np.max(self.labels)) + 1 if len(self) else 0
            labels = np.arange(start, start + len(rows))
        else:
            clash = pd.Index(labels).intersection(pd.Index(self.labels))
            if len(clash):
                raise InvalidArgument(
                    f"label column {self.label_column!r}: {len(clash)} new labels are already references "
                    f"({_shown(clash.to_numpy())}); labels must stay unique (remove() them first to replace them)"
                )
        table = other.table.iloc[rows].reset_index(drop=True)
        if other.feature_column != self.feature_column and other.feature_column in table.columns:
            table = table.rename(columns={other.feature_column: self.feature_column})
        self.labels = np.concatenate([self.labels, labels])
        self.table = pd.concat([self.table, table], ignore_index=True)
        self.roots = tuple(sorted({*self.roots, *other.roots}))
        shared = self.raw_embeddings is self.embeddings
        if not shared:
            self.raw_embeddings = appended(self.raw_embeddings, other.raw_embeddings[rows])
        self.index.add(self.project(other.raw_embeddings[rows]))
        self._vectors_changed(shared)
        return len(rows)

    def positions_of(self, labels: Any) -> np.ndarray:
        """Positions of the references named by ``labels`` (each must exist, and be named once)."""
        wanted = np.atleast_1d(
            np.asarray(list(labels) if isinstance(labels, list | tuple | set | pd.Index | pd.Series) else labels)
        )
        if wanted.ndim != 1:
            raise InvalidArgument(f"labels must be a label or a 1-D list of labels, got shape {wanted.shape}")
        counts = pd.Series(wanted).value_counts()
        if (counts > 1).any():
            raise InvalidArgument(f"labels to remove are repeated: {_shown(counts.index[counts > 1].to_numpy())}")
        positions = pd.Index(self.labels).get_indexer(wanted)
        if (positions < 0).any():
            raise InvalidArgument(f"no reference has label {_shown(wanted[positions < 0])}")
        return positions

    def remove(self, positions: np.ndarray) -> None:
        """Drop the references at ``positions``; later references move up. At least one must remain."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == len(self):
            raise InvalidArgument("cannot remove every reference: a model needs at least one (build a new one instead)")
        if len(positions) == 0:
            return
        self.labels = np.delete(self.labels, positions)
        self.table = self.table.drop(index=self.table.index[positions]).reset_index(drop=True)
        shared = self.raw_embeddings is self.embeddings
        if not shared:
            self.raw_embeddings = without(self.raw_embeddings, positions)
        self.index.remove(positions)
        self._vectors_changed(shared)

    def _vectors_changed(self, shared: bool) -> None:
        self._changed()
        self.embeddings = self.index.vectors
        if shared:
            self.raw_embeddings = self.embeddings
        if self.projection is not None and self.projection.kind == "whiten":
            # A whitening is fitted on the references: it changes with them, and so does every vector.
            self.refit_projection()
        else:
            self.index = after_change(self.index, self.embeddings, self.metric)

    def refit_projection(self) -> None:
        """Refit a PCA-whitening on the current references, re-project them and rebuild the index.

        A learned (LDA) projection stays as it was trained and only projects
        the references; references without a projection are left as they are.
        """
        if self.projection is None:
            return
        self._changed()
        if self.projection.kind == "whiten":
            self.projection = self.projection.refit(self.raw_embeddings)
        self.embeddings = self.projection.apply(self.raw_embeddings)
        self.index = build_index(self.embeddings, self.metric, self.index.build.requested)

    def replace(self, other: References) -> None:
        """Take ``other``'s references, vectors and projection, keeping this index's requested method."""
        requested = self.index.build.requested
        self._changed()
        self.labels, self.table = other.labels, other.table
        self.roots = tuple(sorted({*self.roots, *other.roots}))
        self.raw_embeddings, self.embeddings, self.projection = other.raw_embeddings, other.embeddings, other.projection
        self.index = build_index(self.embeddings, self.metric, requested)

    def sync(self, fresh: References) -> dict[str, int]:
        """Become ``fresh`` (the same sources listed and embedded again), matched by path.

        References whose file is gone are removed, changed ones replaced, new
        ones appended; the index is updated in place unless nothing survives.
        Returns the counts ``added``, ``removed``, ``changed``.
        """
        if self.paths is None:
            raise InvalidArgument("this model was not built from image files: it cannot be synced with a folder")
        old = pd.Index([os.fspath(p) for p in self.paths])
        new = pd.Index([os.fspath(p) for p in fresh.paths or []])
        in_new = new.get_indexer(old)
        gone = np.flatnonzero(in_new < 0)
        both = np.flatnonzero(in_new >= 0)
        changed = both[np.any(np.asarray(self.raw_embeddings[both]) != fresh.raw_embeddings[in_new[both]], axis=1)]
        added = np.flatnonzero(old.get_indexer(new) < 0)
        if len(gone) + len(changed) == len(self):  # nothing survives: take the fresh set as it is
            self.replace(fresh)
            added = np.arange(len(new))
        else:
            self.remove(np.sort(np.concatenate([gone, changed])))
            self.append(fresh, np.sort(np.concatenate([added, in_new[changed]])))
            self._take_new_columns(fresh)
        return {"added": int(len(added)), "removed": int(len(gone)), "changed": int(len(changed))}

    def _take_new_columns(self, fresh: References) -> None:
        """Columns ``fresh`` has for every file and these references lack (facts a newer lookalike reads off the
        pixels, say): taken for every reference, so an older model gets them on its next re-index."""
        missing = [c for c in fresh.table.columns if c not in self.table.columns or self.table[c].isna().any()]
        if not missing:
            return
        self._changed()
        rows = pd.Index([os.fspath(p) for p in fresh.paths]).get_indexer([os.fspath(p) for p in self.paths])
        for column in missing:
            self.table[column] = fresh.table[column].to_numpy()[rows]
