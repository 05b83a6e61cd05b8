"""The user-facing model: create, query, similarity_graph, summary, save and load.

This is the only module that knows all the stages: ingest (what the user
passed), embed (pixels to vectors), index (vectors to neighbours), the
operations over :class:`lookalike.references.core.References` and storage. Nothing
below it imports it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lookalike import dedup
from lookalike.audit import AuditReport
from lookalike.audit import audit as audit_references
from lookalike.dedup import moves
from lookalike.dedup.calibrate import Calibration, calibrate
from lookalike.dedup.decisions import Decisions, read_saved
from lookalike.dedup.tiers import COPY_TIERS, Sameness
from lookalike.embed.batch import Embedded
from lookalike.embed.extractor import BATCH_SIZE
from lookalike.embed.registry import DEFAULT_MODEL, Descriptor, ModelSpec, Preprocessing, get_spec
from lookalike.engines import Engine, as_engine
from lookalike.errors import Failure, InvalidArgument
from lookalike.explore import layout as layouts
from lookalike.explore.layout import MAP_FILE, MapLayout
from lookalike.index import ExactIndex, IndexFileError, check_metric, read_index
from lookalike.index.factory import check_method
from lookalike.ingest.download import DownloadSettings
from lookalike.ingest.names import text_column
from lookalike.ingest.report import failure_table
from lookalike.ingest.sources import absolute_paths, folder_roots
from lookalike.ingest.tables import (
    Rows,
    as_query_rows,
    as_rows,
    find_feature_column,
    labels_of,
    stack_vectors,
    without_missing_labels,
)
from lookalike.operations import graph as graph_edges
from lookalike.references.core import References
from lookalike.references.projection import Projection, fit_projection
from lookalike.store import storage
from lookalike.store.files import locked, write_bytes_atomic
from lookalike.store.manifest import CANDIDATES_FILE, Manifest
from lookalike.summary import summary_text, summary_values
from lookalike.validation import check_positive_int, check_threshold

__all__ = ["ImageSimilarityModel", "create", "load_model"]

_GRAPH_ALIASES = {"graph": "graph", "sgraph": "graph", "table": "table", "sframe": "table"}


def _all_text(values: list) -> bool:
    """Whether ``values`` are all text (paths of files, or URLs), so that they name the queries' files."""
    return bool(values) and all(isinstance(v, str) for v in values)


def _storable_columns(table: pd.DataFrame, feature: str | None) -> pd.DataFrame:
    """The columns worth keeping with the references: the paths and plain scalar metadata."""
    keep = []
    for name in table.columns:
        column = table[name]
        if column.dtype != object or name == feature or column.map(lambda v: v is None or isinstance(v, str)).all():
            keep.append(name)
    kept = table[keep].reset_index(drop=True)
    if feature in kept.columns and kept[feature].map(lambda v: isinstance(v, os.PathLike)).any():
        kept[feature] = kept[feature].map(os.fspath)
    if feature in kept.columns and not kept[feature].map(lambda v: isinstance(v, str)).all():
        kept = kept.drop(columns=[feature])  # bytes, PIL images and arrays stay out of the saved model
    return kept


class ImageSimilarityModel:
    """Nearest-neighbour search over image embeddings. Build one with :func:`lookalike.create`.

    A thin front over :class:`lookalike.references.core.References` (``model.core``),
    which every operation (graph, dedup, match, evaluate, export) works on.

    Attributes
    ----------
    embeddings : numpy.ndarray
        (n, d) float32 embedding of each reference, in reference order (after the projection, if any).
    raw_embeddings : numpy.ndarray
        Each reference's embedding as the network gave it (before the projection).
    labels : numpy.ndarray
        The label of each reference.
    references : pandas.DataFrame
        The reference table as kept by the model (label, path and metadata columns).
    failures : pandas.DataFrame
        Images that could not be embedded: ``source`` and ``reason``.
    map : lookalike.explore.layout.MapLayout or None
        The 2-D map last computed (:meth:`compute_map`) or saved with the model.
    """

    def __init__(
        self,
        core: References,
        failures: pd.DataFrame | None = None,
        training_time: float = 0.0,
        build_stats: dict[str, int] | None = None,
    ):
        #: The references, their vectors, index and embedding spec: what the operations work on.
        self.core = core
        self.failures = failures if failures is not None else failure_table([], with_id=False)
        self.training_time = training_time
        #: How the last create() got its embeddings: counts "embedded", "from_cache", "failed".
        self.build_stats: dict[str, int] = dict(build_stats or {})
        #: What a person decided about duplicates (keep this one, not duplicates), honoured by find_duplicates.
        self.decisions = Decisions()
        #: The 2-D map last computed or loaded (see :meth:`compute_map`); it may predate add/remove.
        self.map: MapLayout | None = None
        # (real path, generation) of the saved model this one was loaded from (and saved to since): a save
        # there checks that no other process saved it meanwhile. None for a model made afresh.
        self._saved_as: tuple[str, storage.Generation] | None = None
        # How many times the references had changed when they were last loaded or saved (References.changes).
        self._saved_changes = 0

    # Turi's names and the attributes users read, kept on the front and answered by the core.
    embeddings = property(lambda self: self.core.embeddings, doc="(n, d) float32 embeddings, as indexed.")
    raw_embeddings = property(
        lambda self: self.core.raw_embeddings, doc="The network's embeddings, before the projection."
    )
    labels = property(lambda self: self.core.labels, doc="The label of each reference.")
    references = property(lambda self: self.core.table, doc="The reference table (paths and metadata).")
    projection = property(lambda self: self.core.projection, doc="The fitted whitening or LDA, or None.")
    metric = property(lambda self: self.core.metric, doc="The distance: euclidean, cosine or dot.")
    label = property(lambda self: self.core.label_column, doc="The dataset's label column (None: row numbers).")
    feature = property(
        lambda self: self.core.feature_column, doc="The column the references came from (Turi's ``feature``)."
    )
    roots = property(
        lambda self: self.core.roots, doc="The folders the references were indexed from: file actions stay inside."
    )
    batch_size = property(lambda self: self.core.batch_size, doc="Images per inference batch.")
    model_name = property(lambda self: self.core.model_name, doc="The network's name; None for precomputed embeddings.")
    dim = property(lambda self: self.core.dim, doc="Length of the indexed embeddings.")
    input_dim = property(lambda self: self.core.input_dim, doc="Length of query embeddings given as vectors.")
    embedding_model = property(
        lambda self: self.core.spec_record, doc="The record of the network, preprocessing, descriptor and precision."
    )

    # ------------------------------------------------------------------- query
    def query(
        self,
        dataset: Any,
        label: str | None = None,
        k: int = 5,
        radius: float | None = None,
        verbose: bool = True,
        verify: Any = False,
        shortlist: int = 20,
        threshold: float | None = None,
    ) -> pd.DataFrame:
        """The nearest references of each query image.

        Parameters
        ----------
        dataset : path, folder, PIL image, bytes, numpy array, list of those, or pandas.DataFrame
            Query images (need not be references; a folder's images are all
            queries, as ``create`` lists them), or query embeddings.
        label : str, optional
            Column of a DataFrame ``dataset`` whose values name the queries;
            row numbers when None.
        k : int, default 5
            Neighbours per query (all references when k exceeds their number).
        radius : float, optional
            Turi's name for ``threshold``: either may be given.
        verify : bool or lookalike.operations.verify.Verifier, default False
            Geometric verification (OpenCV, see docs/verify.md): the ``max(k, shortlist)`` nearest references are
            matched with the query by local features (SIFT + RANSAC, the
            mirrored query too) and re-ranked: verified ones (at least 15
            inliers) first, most inliers first, the others after in distance
            order. Adds an ``inliers`` column. A ``Verifier`` sets the options.
        shortlist : int, default 20
            With ``verify``: how many nearest references are verified per query.
        threshold : float, optional
            Only neighbours at most this far, in the model's metric (with
            ``dot``, whose distance is minus the dot product, ``-0.8`` keeps
            the references whose dot product with the query is at least 0.8).

        Returns
        -------
        pandas.DataFrame
            ``query_label, reference_label, distance, rank`` (rank 1 is nearest), ``inliers`` with ``verify``,
            then the files: ``query_path`` when the queries are files, ``reference_path`` when the references are.

        Examples
        --------
        >>> model.query("holiday.jpg", k=1)  # doctest: +SKIP
           query_label  reference_label  distance  rank   query_path           reference_path
        0            0               17  0.61872      1  holiday.jpg  /home/me/photos/IMG_0017.jpg
        """
        k = check_positive_int("k", k)
        threshold = check_threshold(threshold, self.metric, radius)
        rows = as_query_rows(dataset, self.feature, self.input_dim, label=label)
        query_labels = labels_of(rows.table, label, "query dataset", unique=False)
        vectors, positions, failures = self.core.embed(rows, verbose, "query")
        vectors = self.core.project(vectors)
        sources = rows.table[rows.feature].tolist() if rows.feature else []
        if len(positions) == 0:
            raise failures[0].error()
        inliers = None
        if verify:
            from lookalike.operations.verify import verify_query

            queries = [sources[p] for p in positions] if sources else None
            distances, neighbours, inliers = verify_query(self.core, vectors, queries, k, verify, shortlist, verbose)
        else:
            distances, neighbours = self.core.search(vectors, k)
        query_paths = np.array(sources, dtype=object)[positions] if _all_text(sources) else None
        return self.core.result_table(
            query_labels[positions],
            distances,
            neighbours,
            threshold,
            inliers=inliers,
            paths=self.core.path_array(),
            query_paths=query_paths,
        )

    def similarity_graph(
        self,
        k: int = 5,
        radius: float | None = None,
        include_self_edges: bool = False,
        output_type: str = "graph",
        path: str | os.PathLike | None = None,
        threshold: float | None = None,
    ):
        """Each reference's ``k`` nearest other references, searched in blocks (never an n x n matrix).

        Parameters
        ----------
        k : int, default 5
        radius : float, optional
            Turi's name for ``threshold``: either may be given.
        include_self_edges : bool, default False
            Keep each reference's edge to itself (distance 0, rank 1).
        output_type : {"graph", "table"}, default "graph"
            ``"graph"``: a networkx DiGraph on the labels, edges carrying
            ``distance`` and ``rank``. ``"table"``: a DataFrame
            ``__src_id, __dst_id, distance, rank`` (the ids are the labels:
            row numbers unless ``create`` had ``label=``), then
            ``__src_path, __dst_path`` (each edge's two files) when the
            references are files. Turi's ``"SGraph"`` and ``"SFrame"`` are accepted.
        path : str or path, optional
            With ``output_type="table"``: stream the edges to this ``.parquet``
            or ``.csv`` file block by block (never all in memory) and return
            its path; read it lazily with ``pyarrow.parquet.ParquetFile(path)``.
            The file's rows also carry ``metric``, the metric of ``distance``.
        threshold : float, optional
            Only edges at most this long, in the model's metric (see :meth:`query`).

        Examples
        --------
        >>> model.similarity_graph(k=5, output_type="table", path="edges.parquet")  # doctest: +SKIP
        PosixPath('edges.parquet')
        """
        k = check_positive_int("k", k)
        threshold = check_threshold(threshold, self.metric, radius)
        kind = _GRAPH_ALIASES.get(str(output_type).lower())
        if kind is None:
            raise InvalidArgument(
                f"output_type must be 'graph' or 'table' (or Turi's 'SGraph'/'SFrame'), got {output_type!r}"
            )
        n = len(self.labels)
        if path is not None:
            if kind != "table":
                raise InvalidArgument("path= streams edges to a file: use output_type='table' with it")
            graph_edges.write_edges(self.core, path, k, threshold, include_self_edges)
            return Path(path)
        edges = graph_edges.edge_table(self.core, k, threshold, include_self_edges)
        if kind == "table":
            return edges
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.labels.tolist() if n else [])
        graph.add_edges_from(
            (s, d, {"distance": float(w), "rank": int(r)})
            for s, d, w, r in zip(
                edges["__src_id"].tolist(), edges["__dst_id"].tolist(), edges["distance"], edges["rank"], strict=True
            )
        )
        return graph

    def find_duplicates(
        self,
        threshold: float | None = None,
        keep: str = "resolution",
        k: int = 10,
        tiers: str | list[str] | tuple[str, ...] | None = None,
        act_on: str | list[str] | tuple[str, ...] = COPY_TIERS,
        keep_in: list[str | os.PathLike] | tuple[str | os.PathLike, ...] = (),
        sameness: Sameness | None = None,
        verbose: bool = False,
    ) -> pd.DataFrame:
        """Groups of copies among the references, each with a keeper, honouring the model's decisions: see
        :func:`lookalike.dedup.find_duplicates`.

        Examples
        --------
        >>> dups = model.find_duplicates(keep="sharpest")  # doctest: +SKIP
        >>> dups[dups.action == "discard"].path.tolist()  # doctest: +SKIP
        """
        return dedup.find_duplicates(
            self.core,
            threshold=threshold,
            keep=keep,
            k=k,
            tiers=tiers,
            decisions=self.decisions,
            act_on=act_on,
            keep_in=keep_in,
            sameness=sameness,
            verbose=verbose,
        )

    def saved_since(self) -> bool:
        """Whether the model this one was loaded from (and last saved to) has been saved by another process since:
        a re-index or an apply from the command line. ``lookalike.load_model`` again reads what it saved."""
        if self._saved_as is None:
            return False
        path, generation = self._saved_as
        return storage.current_generation(path) != generation

    def reloaded(self) -> ImageSimilarityModel:
        """The model saved where this one was loaded from (and last saved to), loaded again: what another process
        saved there since (:meth:`saved_since`). The explorer serves it in place of this one."""
        if self._saved_as is None:
            raise InvalidArgument("this model was neither loaded from a folder nor saved to one: nothing to reload")
        return load_model(self._saved_as[0])

    def duplicate_finder(self, threshold: float | None = None, k: int = 10) -> dedup.DuplicateFinder:
        """A :class:`lookalike.dedup.DuplicateFinder` over these references: candidates found once, verdicts
        remembered, for asking :meth:`find_duplicates`'s question again and again (``finder.find(decisions=...)``)."""
        return dedup.DuplicateFinder(self.core, threshold=threshold, k=k)

    def audit(
        self,
        class_column: str | None = None,
        split_column: str | None = None,
        k: int = 10,
        threshold: float | None = None,
        min_precision: float = 0.5,
        duplicates: bool = True,
        verbose: bool = False,
    ) -> AuditReport:
        """What is wrong with the references as a dataset (leaks, label errors, outliers, poor or broken photos,
        duplicates), each kind with the precision measured on them, honouring the model's decisions: see
        :func:`lookalike.audit.audit`.

        Examples
        --------
        >>> report = model.audit()  # doctest: +SKIP
        >>> report.kinds["blurry"]  # doctest: +SKIP
        {'count': 12, 'expected_precision': 0.91, ...}
        """
        return audit_references(
            self.core,
            failures=self.failures,
            class_column=class_column,
            split_column=split_column,
            k=k,
            threshold=threshold,
            min_precision=min_precision,
            duplicates=duplicates,
            decisions=self.decisions,
            verbose=verbose,
        )

    def calibrate_duplicates(self, sample: int = 30, pairs: int = 200_000) -> Calibration:
        """What each dedup threshold finds and links by mistake on this collection: see :mod:`lookalike.dedup.calibrate`.

        Examples
        --------
        >>> calibration = model.calibrate_duplicates()  # doctest: +SKIP
        >>> print(calibration.summary(0.15))  # doctest: +SKIP
        at threshold 0.15: finds 100% of re-saved copies, ...
        """
        return calibrate(self.core, sample=sample, pairs=pairs)

    def add(
        self, dataset: Any, verbose: bool = True, cache: bool = True, download: DownloadSettings | dict | None = None
    ) -> None:
        """Embed more reference images and add them to the index, without rebuilding it.

        Parameters
        ----------
        dataset : any form :func:`create` takes
            Only these images are embedded (through the embedding cache). With a
            ``label`` column, their labels must be new; otherwise they are numbered on.
        verbose, cache, download
            As for :func:`create`.

        Examples
        --------
        >>> model.add("new_photos/")  # doctest: +SKIP
        >>> model.build_stats["added"]  # doctest: +SKIP
        12
        """
        # A throw-away exact model of the new images, their columns named as the references' are.
        part = self.index_like(dataset, verbose, self.label, self.feature, cache, download, method="brute_force")
        self.core.append(part.core)
        if len(part.failures):
            self.failures = pd.concat([self.failures, part.failures], ignore_index=True)
        self.build_stats = {**part.build_stats, "added": int(len(part.labels))}

    def remove(self, labels: Any) -> None:
        """Remove the references with these labels (each must exist, and be named once).

        Examples
        --------
        >>> model.remove(["IMG_0001", "IMG_0002"])  # doctest: +SKIP
        """
        self.core.remove(self.core.positions_of(labels))

    def sync(
        self, sources: Any, verbose: bool = True, download: DownloadSettings | dict | None = None
    ) -> dict[str, int]:
        """Make the references the images now found in ``sources``: add new files, drop deleted ones and
        re-embed changed ones (the embedding cache makes unchanged files cheap). Returns the counts.

        References are matched by path, so the model must have been built from files.

        Examples
        --------
        >>> model.sync("photos/")  # doctest: +SKIP
        {'added': 3, 'removed': 1, 'changed': 0}
        """
        if self.core.paths is None:
            raise InvalidArgument("this model was not built from image files: it cannot be synced with a folder")
        started = time.perf_counter()
        fresh = self.index_like(sources, verbose, self.label, self.feature, download=download, method="brute_force")
        stats = self.core.sync(fresh.core)
        self.failures = fresh.failures
        self.build_stats = {**fresh.build_stats, **stats}
        self.training_time = time.perf_counter() - started
        return stats

    def index_like(
        self,
        dataset: Any,
        verbose: bool = True,
        label: str | None = None,
        feature: str | None = None,
        cache: bool = True,
        download: DownloadSettings | dict | None = None,
        method: str = "auto",
    ) -> ImageSimilarityModel:
        """A new model of ``dataset``, embedded and projected exactly as this model's references were.

        The same network, preprocessing, descriptor, precision, projection, metric
        and batch size: its distances to this model's references mean what they
        mean within this model (a second set to match against it, images to add).
        The embedding cache makes files indexed before cheap.

        Parameters
        ----------
        dataset : any form :func:`create` takes
            For a model of precomputed embeddings, embeddings of the same length
            (there is no network to embed images with).
        verbose : bool, default True
            Show a progress bar while embedding.
        label, feature, cache, download, method
            As for :func:`create`: ``dataset``'s own label and image columns (its
            row numbers and the column found when None), and how to index it.

        Examples
        --------
        >>> edits = model.index_like("edited_photos/")  # doctest: +SKIP
        >>> lk.match(model, edits, one_to_one=True)  # doctest: +SKIP
        """
        spec = self.core.spec
        return create(
            dataset,
            label=label,
            feature=feature,
            model=spec,
            metric=self.metric,
            batch_size=self.batch_size,
            verbose=verbose,
            cache=cache,
            download=download,
            descriptor=spec.descriptor if spec is not None else None,
            projection=self.projection,
            method=method,
        )

    def extract_features(self, dataset: Any, verbose: bool = True) -> np.ndarray:
        """Embed images with the model's network: a (n, d) float32 array.

        Rows of images that cannot be read are NaN, with a warning naming each one.
        """
        rows = as_query_rows(dataset, self.feature, self.input_dim)
        vectors, positions, _ = self.core.embed(rows, verbose, "dataset", skipped="could not be embedded")
        out = np.full((len(rows.table), self.input_dim), np.nan, dtype=np.float32)
        out[positions] = vectors
        return out

    def query_text(self, text: str | list[str], k: int = 5, threshold: float | None = None) -> pd.DataFrame:
        """The references that best match a description, for models with a text tower (``clip-vit-b-32``).

        Parameters
        ----------
        text : str or list of str
            One description per query; each names its rows in ``query_label``.
        k : int, default 5
        threshold : float, optional
            Only references at most this far (see :meth:`query`).

        Returns
        -------
        pandas.DataFrame
            ``query_label, reference_label, distance, rank`` and ``reference_path``, as :meth:`query`.

        Examples
        --------
        >>> model = lk.create("photos/", model="clip-vit-b-32")  # doctest: +SKIP
        >>> model.query_text("a red dress", k=10)  # doctest: +SKIP
        """
        from lookalike.embed.zoo import text_encoder

        k = check_positive_int("k", k)
        threshold = check_threshold(threshold, self.metric)
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise InvalidArgument(f"text must be a non-empty string or a list of them, got {text!r}")
        vectors = text_encoder(self.core.embedder.spec).encode(texts)
        # A projection is learned on image embeddings only (and LDA on image labels): it would not map
        # text into the same space. So text is compared with the raw image embeddings, exactly.
        index = self.core.index if self.projection is None else ExactIndex(self.raw_embeddings, self.metric)
        distances, neighbours = index.search(vectors, k)
        return self.core.result_table(
            np.asarray(texts, dtype=object), distances, neighbours, threshold, paths=self.core.path_array()
        )

    def export_onnx(self, path: str | os.PathLike, k: int = 5) -> os.PathLike:
        """Write one ONNX file that runs the whole query: uint8 pixels -> top-k references. See :mod:`lookalike.export.onnx`."""
        from lookalike.export.onnx import export_onnx

        return export_onnx(self.core, path, k=k)

    def export_coreml(self, path: str | os.PathLike, k: int = 5) -> os.PathLike:
        """Write a Core ML program (.mlpackage): image -> embedding + top-k references. See :mod:`lookalike.export.coreml`."""
        from lookalike.export.coreml import export_coreml

        return export_coreml(self.core, path, k=k)

    def show(self, results: pd.DataFrame, queries: Any = None, max_queries: int = 20):
        """Query or similarity-graph results as a thumbnail grid for notebooks. See :func:`lookalike.explore.display.result_grid`."""
        from lookalike.explore.display import result_grid

        return result_grid(self.core, results, queries=queries, max_queries=max_queries)

    def _repr_html_(self) -> str:
        from lookalike.explore.display import summary_html

        return summary_html(self._summary_dict())

    # ----------------------------------------------------------------- summary
    def _summary_dict(self) -> dict[str, Any]:
        return summary_values(self._manifest(), len(self.failures))

    def summary(self, output: str | None = None):
        """Describe the model, as Turi Create's ``summary``: network, precision, descriptor, metric, index (and why
        this one), counts, the folders indexed (``roots``).

        Parameters
        ----------
        output : {None, "str", "dict"}
            None prints the summary, ``"str"`` returns it as text, ``"dict"`` as a dict.
        """
        values = self._summary_dict()
        if output == "dict":
            return values
        text = summary_text(values)
        if output == "str":
            return text
        if output is not None:
            raise InvalidArgument(f"output must be None, 'str' or 'dict', got {output!r}")
        print(text)
        return None

    def __repr__(self) -> str:
        return (
            f"ImageSimilarityModel(model={self.model_name or 'precomputed'!r}, metric={self.metric!r}, "
            f"references={len(self.labels)}, dim={self.dim}, failures={len(self.failures)})"
        )

    # ------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> None:
        """Save to a directory (``manifest.json``, ``embeddings.npy``, parquet tables), atomically.

        At every instant ``path`` holds the old model or the new one, even if
        the save is killed; every file's checksum is recorded, so damage is
        found on load (see :mod:`lookalike.store.storage` and ``docs/faults.md``).

        Raises
        ------
        FileExistsError
            ``path`` is something other than a lookalike model or an empty folder.
        lookalike.errors.DiskFull
            The disk holding ``path`` is full (the old model, if any, is left as it was).
        lookalike.errors.StaleModel
            This model was loaded from ``path`` and another process saved it since: saving would drop what
            that process added (load it again). A model made afresh replaces what is at ``path``.
        """
        self._save_references(path)
        if len(self.decisions):
            # A model without decisions leaves those saved there as they are.
            self._merge_decisions(path)

    def _merge_decisions(self, path: str | os.PathLike) -> None:
        """Merge the decisions into those saved at ``path`` (another explorer's or ``lookalike decide``'s), locked."""
        self.decisions.change_saved(path, lambda saved: saved.merge(self.decisions))

    def _manifest(self) -> Manifest:
        """What a save records about the model (its files' checksums are added as they are written)."""
        return Manifest(
            metric=self.metric,
            count=int(len(self.labels)),
            dim=self.dim,
            label_column=self.label,
            feature_column=self.feature,
            batch_size=self.batch_size,
            training_time=self.training_time,
            build_stats=self.build_stats,
            embedding_model=self.core.spec_record,
            index=self.core.index.record(),
            roots=self.core.roots,
            failure_count=int(len(self.failures)),
            projection=self.projection.record() if self.projection is not None else None,
        )

    def _save_references(self, path: str | os.PathLike) -> None:
        """Everything :meth:`save` writes but the decisions, which have their own writer (merged, under a lock)."""
        references = self.references.copy()
        references[storage.LABEL_COLUMN] = self.labels
        manifest = self._manifest().record()
        extra = {}
        if self.projection is not None:
            extra = {**self.projection.files(), FEATURES_FILE: self.raw_embeddings}
        extra.update(self.core.index.files())
        real = os.path.realpath(path)
        expected = self._saved_as[1] if self._saved_as is not None and self._saved_as[0] == real else None
        written = storage.save(
            path, manifest, self.embeddings, references, self.failures, extra_files=extra, expected=expected
        )
        if expected is not None:
            self._saved_as = (real, written)
        self._saved_changes = self.core.changes
        if self.map is not None and self.map.covers(self.core):  # a stale one is left out, to be computed again
            self.map.save(path)
        self._write_candidates(path, written)

    def save_candidates(self) -> bool:
        """Keep the copy candidates found so far beside the saved model this one was loaded from
        (``candidates.npz``, atomic; the model is not rewritten): the next dedup of that model reads them instead of
        searching (``lookalike dedup MODEL`` and the explorer keep them so). False when there are none, or the model
        was not loaded from a folder, or its references changed since, or another process saved it since."""
        if self._saved_as is None or self.core.changes != self._saved_changes or self.saved_since():
            return False
        return self._write_candidates(*self._saved_as)

    def _write_candidates(self, path: str | os.PathLike, saved_as: storage.Generation) -> bool:
        data = dedup.candidates_to_bytes(self.core, saved_as)
        if data is None:
            return False
        write_bytes_atomic(Path(path) / CANDIDATES_FILE, data)
        return True

    def mark_keeper(self, label: Any) -> None:
        """Keep the reference ``label`` whenever it is in a duplicate group (recorded by its file and content).

        Saved with :meth:`save`, or alone with :meth:`save_decisions`.
        """
        self.decisions.keep(self._file_of(label))

    def mark_not_duplicate(self, label_a: Any, label_b: Any) -> None:
        """The references ``label_a`` and ``label_b`` are not duplicates: they are never linked again."""
        self.decisions.not_duplicate(self._file_of(label_a), self._file_of(label_b))

    def mark_discarded(self, label: Any, keeper: Any) -> None:
        """The reference ``label`` is a duplicate of ``keeper``: :meth:`apply_decisions` moves its file away."""
        self.decisions.discard(self._file_of(label), self._file_of(keeper))

    def save_decisions(self, path: str | os.PathLike) -> None:
        """Write only the decisions of the model saved at ``path`` (atomic, small: the embeddings are not rewritten),
        merged with those saved there since this model was loaded (several processes deciding at once all keep theirs).

        Raises
        ------
        lookalike.dedup.decisions.DamagedDecisions
            The ``decisions.json`` there is damaged: it is kept aside (the message names both files), nothing is written.
        """
        if not storage.is_model_dir(Path(path)):
            raise InvalidArgument(f"{path} is not a saved lookalike model: save the model first")
        self._merge_decisions(path)

    def apply_decisions(
        self, move_to: str | os.PathLike | None = None, path: str | os.PathLike | None = None, *, mode: str = "move"
    ) -> moves.MoveReport:
        """Carry out every discard decision: move each discarded file to ``move_to`` (or to the trash, or delete
        it), and drop it from the model.

        Only files inside the folders the model was indexed from (:attr:`roots`) are acted on; a file
        moved goes to its relative path under ``move_to`` (outside those folders), never overwriting, never
        through a symbolic link, copied and verified before its source goes when ``move_to`` is on another
        disk. A discard whose keeper is discarded too, or whose file changed since, is skipped and reported.
        A manifest written before anything changes lets ``lookalike undo`` put every file back (but
        permanently deleted ones), and ``lookalike apply --resume`` finish an apply that was cut short.

        Parameters
        ----------
        move_to : str or path, optional
            Where the discarded files go (required with ``mode="move"``); with the other modes, where the
            manifest is written (default: ``~/.local/share/lookalike/moves``).
        path : str or path, optional
            Where this model is saved: its folder is locked for the whole apply (a second apply waits), the
            apply is refused if another process saved the model since this one loaded it
            (:class:`~lookalike.errors.StaleModel`), and the model is saved there again without the files
            acted on, their decisions marked carried out.
        mode : {"move", "trash", "permanently"}, default "move"
            ``"trash"``: the system trash (freedesktop.org, Linux); ``"permanently"``: delete, not restorable.

        Raises
        ------
        lookalike.errors.DiskFull, lookalike.errors.FileMoveError
            A full disk, a read-only disk, no permission, a file-size limit: the apply stopped there; what
            was done is saved and recorded in the manifest (the exception's ``report``), nothing is half-moved.

        Examples
        --------
        >>> model.mark_discarded("IMG_0001 (copy)", keeper="IMG_0001")  # doctest: +SKIP
        >>> print(model.apply_decisions("../discarded", path="photos.lookalike").summary())  # doctest: +SKIP
        moved 1 files, skipped 0; undo with: lookalike undo ../discarded/lookalike-moves-...json
        """
        with self._holding(path):
            report = moves.apply_discards(self.core, self.decisions, move_to, model_folder=path, mode=mode)
            self._saved_after_moves(report, path, self._mark_moved)
        return _raised_if_stopped(report)

    def interrupted_applies(self, move_to: str | os.PathLike | None = None) -> list[Path]:
        """The manifests of applies on this model's folders that were cut short, in ``move_to`` (or where trash and
        permanent deletions keep theirs), oldest first: :meth:`resume_decisions` finishes each."""
        return moves.unfinished(move_to, self.core.roots)

    def resume_decisions(self, manifest: str | os.PathLike, path: str | os.PathLike | None = None) -> moves.MoveReport:
        """Finish an :meth:`apply_decisions` that was interrupted, from its manifest (``path`` as there)."""
        with self._holding(path):
            report = moves.resume(manifest, self.core, self.decisions)
            self._saved_after_moves(report, path, self._mark_moved)
        return _raised_if_stopped(report)

    def undo_moves(
        self, manifest: str | os.PathLike, path: str | os.PathLike | None = None, verbose: bool = True
    ) -> moves.MoveReport:
        """Put back every file an apply moved (never overwriting), add them back to this model and forget
        their discard decisions, so that they are not moved again; with ``path``, save the model there.

        ``lookalike undo MANIFEST`` does this on the model the manifest names.
        """
        with self._holding(path):
            report = moves.undo(manifest)
            present = {p for p in self.core.file_paths() if p is not None}
            back = [p for p in report.moved if p not in present]
            if back:
                self.add(back, verbose=verbose)
            restored = set(report.moved)
            if path is None:
                self.decisions.revert_moves(restored)
            else:
                self._saved_after_moves(report, path, lambda saved: saved.revert_moves(restored))
        return _raised_if_stopped(report)

    @contextmanager
    def _holding(self, path: str | os.PathLike | None) -> Iterator[None]:
        """Hold the lock of the model saved at ``path`` (if any), refusing to go on if another process saved
        it since this model was loaded from it: files moved by a stale model could not be saved."""
        if path is None or not storage.is_model_dir(Path(path)):
            yield
            return
        with locked(path):
            if self._saved_as is not None and self._saved_as[0] == os.path.realpath(path):
                storage.check_unchanged(path, self._saved_as[1])
            yield

    def _saved_after_moves(
        self, report: moves.MoveReport, path: str | os.PathLike | None, change: Callable[[Decisions], None]
    ) -> None:
        """Save the references the moves changed, and ``change`` the decisions saved beside them (merged)."""
        if path is None or not report.moved:
            return
        self._save_references(path)
        self.decisions.change_saved(path, change)

    def _mark_moved(self, saved: Decisions) -> None:
        saved.mark_moved({r["paths"][0]: r["moved_to"] for r in self.decisions.records if "moved_to" in r})

    # --------------------------------------------------------------------- map
    def compute_map(self, method: str = "auto", verbose: bool = True, tsne_limit: int | None = None) -> MapLayout:
        """A 2-D map of the references where images that look alike lie close together, and k-means clusters.

        The map saved with the model (or computed before) is reused while it
        covers exactly these references; after ``add``/``remove``/``sync`` a
        new one is computed. Kept as :attr:`map`, saved by :meth:`save` or
        alone by :meth:`save_map`. See :mod:`lookalike.explore.layout`.

        Parameters
        ----------
        method : {"auto", "tsne", "pca"}, default "auto"
            ``"tsne"`` keeps each reference's neighbours near it (openTSNE:
            ``pip install 'lookalike[map]'``); ``"pca"`` is the first two
            principal axes (fast, but they keep little of what is near what);
            ``"auto"`` is t-SNE when openTSNE is installed, else PCA, and the
            layout's ``note`` says how to get t-SNE.
        verbose : bool, default True
            Show a progress bar while t-SNE runs.
        tsne_limit : int, optional
            With ``"auto"``, lay out at most this many references with t-SNE
            (PCA above, saying so); a saved t-SNE map is reused whatever the size.

        Returns
        -------
        lookalike.explore.layout.MapLayout
            ``coordinates`` (n, 2), ``clusters`` (n,), ``method``, ``explained`` (PCA), ``seconds``, ``note``.

        Examples
        --------
        >>> layout = model.compute_map()  # doctest: +SKIP
        >>> layout.method, layout.coordinates.shape  # doctest: +SKIP
        ('tsne', (80, 2))
        >>> model.save_map("clothes.lookalike")  # doctest: +SKIP
        """
        check_positive_int("tsne_limit", tsne_limit, none=True)
        total = layouts.EARLY_ITERATIONS + layouts.ITERATIONS
        # delay: a reused map or a PCA one is done before a bar would show
        with tqdm(
            total=total, desc="t-SNE map", unit="it", disable=None if verbose else True, leave=False, delay=1
        ) as bar:
            self.map = layouts.compute(self.core, method, previous=self.map, tsne_limit=tsne_limit, progress=bar.update)
        return self.map

    def save_map(self, path: str | os.PathLike) -> None:
        """Write only the map of the model saved at ``path`` (``map.npz``, atomic; the embeddings are not rewritten).

        The map must cover the model's references: call :meth:`compute_map` first.
        """
        if not storage.is_model_dir(Path(path)):
            raise InvalidArgument(f"{path} is not a saved lookalike model: save the model first")
        if self.map is None or not self.map.covers(self.core):
            raise InvalidArgument("this model has no map of its current references: call compute_map() first")
        self.map.save(path)

    def _file_of(self, label: Any) -> str:
        position = int(self.core.positions_of([label])[0])
        path = self.core.file_paths()[position]
        if path is None:
            raise InvalidArgument(f"reference {label!r} has no image file: decisions are recorded on files")
        return path

    # ----------------------------------------------------------------- explore
    def explore(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, open_browser: bool = True):
        """Browse the model in a web browser, as Turi Create's ``explore()``: the explorer runs in a background thread.

        Parameters
        ----------
        host : str, default "127.0.0.1"
            Address to bind; anything beyond loopback needs ``token``.
        port : int, default 0
            0 picks a free port.
        token : str, optional
            Bearer token the API requires (the page gets it through the URL).
        open_browser : bool, default True
            Open the page with :mod:`webbrowser`.

        Returns
        -------
        lookalike.server.runner.RunningServer
            ``.url`` of the page, ``.stop()`` to shut it down (or use it in a ``with`` block).

        Examples
        --------
        >>> running = model.explore()  # doctest: +SKIP
        >>> running.url                # doctest: +SKIP
        'http://127.0.0.1:40123/'
        >>> running.stop()             # doctest: +SKIP
        """
        from lookalike.server.runner import start_in_thread

        return start_in_thread(self, host=host, port=port, token=token, open_browser=open_browser)


#: Raw embeddings of a model with a projection, saved beside embeddings.npy so the projection can be refitted.
FEATURES_FILE = "features.npy"


def _raised_if_stopped(report: moves.MoveReport) -> moves.MoveReport:
    """The report, or its stopping error (carrying the report as ``report``) once what was done is saved."""
    if report.stopped is not None:
        report.stopped.report = report
        raise report.stopped
    return report


def create(
    dataset: Any,
    label: str | None = None,
    feature: str | None = None,
    model: str | os.PathLike | ModelSpec | None = DEFAULT_MODEL,
    metric: str = "euclidean",
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    preprocessing: dict | Preprocessing | None = None,
    cache: bool = True,
    download: DownloadSettings | dict | None = None,
    engine: str | Engine = "local",
    descriptor: str | dict | Descriptor | None = None,
    train_label: str | None = None,
    projection: Projection | None = None,
    method: str = "auto",
    precision: str | None = None,
) -> ImageSimilarityModel:
    """Embed every reference image and index the embeddings.

    Parameters
    ----------
    dataset : folder, glob, list of paths or URLs, table file, pandas.DataFrame, or 2-D numpy array
        The reference images. A DataFrame's image column (``feature``) may
        hold paths, http(s) URLs, bytes, PIL images or HxWxC arrays; with
        ``model=None`` it holds 1-D embeddings instead, and a 2-D array is
        taken as embeddings. A ``.csv``, ``.tsv``, ``.parquet`` or ``.txt``
        file is read as such a table. URLs are downloaded first, into the
        download cache (``lookalike.config.cache_dir() / "downloads"``).
    label : str, optional
        Column whose (unique) values name the references (a table's id
        column); row numbers when None. Failures then carry an ``id`` column.
    feature : str, optional
        The image column; found automatically when only one column holds images.
    model : str, path, ModelSpec or None, default "efficientnet_lite0"
        A registered network (see :func:`lookalike.available_models`), a local
        ``.onnx`` file (with ``preprocessing=``), or None for precomputed embeddings.
        A :class:`~lookalike.embed.registry.ModelSpec` is used with its own
        descriptor unless ``descriptor`` is given.
    metric : {"euclidean", "cosine", "dot"}, default "euclidean"
    batch_size : int, default 16
        Images per inference batch.
    verbose : bool, default True
        Show a progress bar while embedding.
    preprocessing : dict, optional
        For a local ``.onnx`` model: size, resize, channel_order, scale, mean, std.
    cache : bool, default True
        Reuse and store embeddings of image files in the on-disk cache
        (``lookalike.config.cache_dir()``), keyed by path, size, mtime and
        model: re-indexing a folder embeds only new or changed files, and an
        interrupted run resumes where it stopped.
    download : dict or DownloadSettings, optional
        For URLs: timeouts, total deadline, size cap, retries, concurrency
        (see :class:`lookalike.ingest.download.DownloadSettings`).
    engine : {"local", "ray"} or an engine object, default "local"
        Where the network runs. ``"ray"`` or ``RayEngine(address=...,
        work_dir=...)`` (:class:`lookalike.engines.RayEngine`) embeds on a Ray
        cluster (``pip install 'lookalike[ray]'``, see ``docs/distributed.md``):
        an actor pool runs the same extractor, writes parquet shards, and this
        process builds the model from them. Folders, tables and
        ``s3://``/``gs://`` prefixes are accepted.
    descriptor : {"gem", "plain", "fast", "best"}, dict or Descriptor, optional
        How the network's feature map becomes the indexed vector: GeM
        pooling, mirror-image and multi-scale averaging, unit length,
        PCA-whitening fitted on the references (see ``docs/quality.md``).
        Default: ``"gem"`` (GeM pooling, unit length: better than the
        average pool on every measured set, at the same speed) for networks
        that expose their last feature map (the registered networks), ``"plain"``
        (the network's output) for the others; ``"plain"`` gives Turi's
        embedding. With ``model=None`` only ``whiten`` applies, and nothing
        unless asked.
    train_label : str, optional
        A column of class labels: learn a linear discriminant projection
        (LDA) from them on top of the network, apply it to the references
        and to every query, and save it with the model.
    projection : lookalike.references.projection.Projection, optional
        A projection fitted elsewhere (for example ``other_model.projection``,
        learned with ``train_label`` on a training set), applied as it is.
    method : str, default "auto"
        The index: ``"brute_force"`` (exact), ``"hnsw"`` or ``"ivf"``
        (faiss, approximate; recall@10 measured at build time and shown by
        ``summary()``), a faiss factory string such as ``"IVF1024,Flat"``,
        or ``"auto"``: exact up to ``lookalike.index.AUTO_MAX_EXACT_VALUES``
        values (50,000 references of 512-d, 20,000 of 1280-d), IVF from
        there on (see ``docs/scale.md``).
    precision : {"int8", "fp32", "auto"}, optional
        The number format the network runs in: None takes the network's
        default (int8 for ``efficientnet_lite0``, float32 for the others);
        ``"auto"`` takes int8 on CPUs with VNNI instructions, float32
        elsewhere. Int8 and float32 embeddings are not interchangeable: the
        precision is saved with the model and every query uses it.

    Returns
    -------
    ImageSimilarityModel

    Examples
    --------
    >>> import lookalike as lk
    >>> refs = lk.load_images("samples/clothing")
    >>> model = lk.create(refs, verbose=False)
    >>> model.query(refs.head(2), k=3)["rank"].tolist()
    [1, 2, 3, 1, 2, 3]
    """
    started = time.perf_counter()
    engine = as_engine(engine)
    check_metric(metric)
    check_method(method)  # a factory string is checked again once the dimension is known
    batch_size = check_positive_int("batch_size", batch_size)
    if train_label is not None and projection is not None:
        raise InvalidArgument("pass train_label= (learn a projection here) or projection= (use a fitted one), not both")
    spec, whiten = _resolve_spec(model, preprocessing, descriptor, precision)
    indexed_dim = spec.dim if spec is not None and train_label is None and projection is None else None
    if indexed_dim is not None:
        check_method(method, indexed_dim)  # before any embedding: the network's output is what gets indexed
    rows, labels, load_failures, feature_column = _read_rows(engine.prepare(dataset), label, feature, spec)
    if indexed_dim is not None:
        check_method(method, indexed_dim, len(rows.table))  # and trainable on that many images at the most
    if spec is None:
        embedded = Embedded(rows.vectors, np.arange(len(rows.vectors)))
    else:
        embedded = engine.embed(spec, rows.table[rows.feature].tolist(), batch_size, verbose, cache, download)
    features, references, failures = _assemble(rows, labels, load_failures, embedded, label, spec, verbose)
    positions = embedded.positions
    roots = folder_roots(dataset) if spec is not None else ()
    if roots and rows.feature in references.columns:
        # Files are acted on by path (moves, sync): a path relative to this run's working folder would name
        # another file, or none, from another one.
        absolute = absolute_paths(references[rows.feature].tolist(), roots)
        references[rows.feature] = text_column(absolute).set_axis(references.index)
    if train_label is not None:
        projection = _learned_projection(rows, positions, references, features, train_label)
    elif projection is None and whiten:
        projection = fit_projection("whiten", features)
    core = References(
        features,
        labels[positions],
        references,
        metric,
        spec=spec,
        projection=projection,
        method=method,
        label_column=label,
        feature_column=feature_column,
        batch_size=int(batch_size),
        roots=roots,
    )
    reused = embedded.stats.get("from_cache", 0) + embedded.stats.get("from_shards", 0)
    stats = {"embedded": int(len(positions) - reused), "from_cache": 0, **embedded.stats, "failed": len(failures)}
    return ImageSimilarityModel(core, failures, training_time=time.perf_counter() - started, build_stats=stats)


def _resolve_spec(model, preprocessing, descriptor, precision) -> tuple[ModelSpec | None, bool]:
    """The embedding spec (None for precomputed embeddings) and whether to fit a whitening on the references."""
    if model is None:
        spec = None
    elif isinstance(model, ModelSpec) and descriptor is None:
        spec = model.with_precision(precision)  # a spec carries its descriptor (lk.match embeds as a saved model did)
    else:
        spec = get_spec(model, preprocessing).with_descriptor(descriptor).with_precision(precision)
    wanted = Descriptor.resolve(descriptor or {})  # model=None: nothing unless asked
    if spec is None and wanted.in_graph is not None:
        raise InvalidArgument("model=None indexes precomputed embeddings: of descriptor options only whiten applies")
    return spec, (spec.descriptor if spec is not None else wanted).whiten


def _read_rows(dataset: Any, label: str | None, feature: str | None, spec: ModelSpec | None):
    """``(rows, labels, failures of listing, feature column)``: the dataset as rows of images, or of vectors
    without a network; the feature column is the table's column they came from (Turi's ``feature``)."""
    rows, unlabelled = without_missing_labels(as_rows(dataset, feature, vectors_only=spec is None, label=label), label)
    load_failures = (rows.failures or []) + unlabelled
    if len(rows.table) == 0:
        detail = f" ({len(load_failures)} files could not be read, first: {load_failures[0]})" if load_failures else ""
        raise InvalidArgument(f"dataset is empty: no images found in {dataset!r}{detail}")
    labels = labels_of(rows.table, label, "dataset")
    column = rows.feature
    if spec is None and len(rows.table.columns):
        # Remembered, so that a query with the same table uses this column, as Turi does, not its images.
        column = find_feature_column(rows.table, feature, want="vector", label=label)
        if rows.vectors is None:
            rows = Rows(rows.table, None, stack_vectors(rows.table[column].tolist(), f"column {column!r}"))
    if spec is not None and rows.vectors is not None:
        raise InvalidArgument("the dataset holds embeddings: pass model=None to index precomputed embeddings")
    return rows, labels, load_failures, column


def _assemble(
    rows: Rows, labels: np.ndarray, load_failures: list[Failure], embedded: Embedded, label, spec, verbose: bool
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """One assembly step for every engine: embeddings by input position -> (raw embeddings, reference table, failures)."""
    vectors, positions, failures, headers = embedded.vectors, embedded.positions, embedded.failures, embedded.headers
    skipped = load_failures + [replace(f, id=labels[f.position]) for f in failures]
    if len(positions) == 0:
        raise InvalidArgument(f"none of the {len(rows.table)} images could be read; first failure: {skipped[0]}")
    if failures and verbose:
        warnings.warn(f"{len(skipped)} images skipped (see model.failures)", RuntimeWarning, stacklevel=3)
    references = _storable_columns(rows.table.iloc[positions], rows.feature)
    if spec is not None:
        for column in [c for c in headers.columns if c not in references.columns]:
            references[column] = headers[column].to_numpy()
    failures_found = failure_table(skipped, with_id=label is not None)
    return np.ascontiguousarray(vectors, dtype=np.float32), references, failures_found


def _learned_projection(
    rows: Rows, positions: np.ndarray, references: pd.DataFrame, features: np.ndarray, train_label: str
) -> Projection:
    """An LDA learned from the class labels in ``train_label``, kept as a reference column too."""
    if train_label not in rows.table.columns:
        raise InvalidArgument(f"train_label {train_label!r} is not a column of the dataset: {list(rows.table.columns)}")
    references[train_label] = rows.table[train_label].to_numpy()[positions]
    if references[train_label].isna().any():
        raise InvalidArgument(f"train_label column {train_label!r} has missing values: every reference needs a class")
    return fit_projection("lda", features, references[train_label].to_numpy(), label_column=train_label)


def load_model(path: str | os.PathLike) -> ImageSimilarityModel:
    """Load a model saved with :meth:`ImageSimilarityModel.save`.

    Every file is checked against the checksums saved with it (large arrays
    by size, header and sampled blocks; ``lookalike info --verify`` reads
    them whole), and a model being re-saved meanwhile is read whole, old or new.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    lookalike.store.storage.ModelFormatError
        ``path`` is not a lookalike model, is damaged, or is from a newer lookalike.
    """

    def read(saved: storage.SavedModel) -> ImageSimilarityModel:
        model = _loaded(saved)
        model._saved_as = (os.path.realpath(path), saved.generation)  # a later save there checks it is still this
        return model

    model = storage.load(path, read)
    model.decisions = read_saved(path)  # beside the generations: changed often, written on its own
    _upgrade_relative_paths(model)
    model.map = _saved_map(path)
    _saved_candidates(model, path)
    return model


def open_source(source: Any, verbose: bool = True, **options: Any) -> ImageSimilarityModel:
    """A model for ``source``: itself when it is one, loaded when it is a saved model's folder, else built
    from it (a folder of photos, a table of paths, a list...) with :func:`create` and ``options``."""
    if isinstance(source, ImageSimilarityModel):
        return source
    if storage.is_saved_model(source):
        return load_model(source)
    return create(source, verbose=verbose, **options)


def audit(
    dataset: Any,
    class_column: str | None = None,
    split_column: str | None = None,
    verbose: bool = True,
    **options: Any,
) -> AuditReport:
    """Audit a dataset in one call: a folder of photos, a table (CSV/parquet) of paths, a saved model or a model.

    A folder is indexed first (with the embedding cache, so a second audit embeds nothing); ``options`` go to
    :meth:`ImageSimilarityModel.audit` (``k``, ``threshold``, ``min_precision``, ``duplicates``).

    Examples
    --------
    >>> import lookalike as lk
    >>> report = lk.audit("clothing/")  # doctest: +SKIP
    >>> report.findings.head()  # doctest: +SKIP
    """
    model = open_source(dataset, verbose=verbose)
    return model.audit(class_column=class_column, split_column=split_column, verbose=verbose, **options)


def _upgrade_relative_paths(model: ImageSimilarityModel) -> None:
    """Models saved before paths were made absolute at indexing kept them relative to the working folder of
    that run: find each file again (see :func:`~lookalike.ingest.sources.absolute_paths`), here and in the
    decisions; the next save stores them absolute."""
    column = model.feature
    if not model.roots or column not in model.references.columns:
        return
    before = model.references[column].tolist()
    if all(not isinstance(p, str) or os.path.isabs(p) for p in before):
        return
    after = absolute_paths(before, model.roots)
    model.references[column] = text_column(after).set_axis(model.references.index)
    renamed = {old: new for old, new in zip(before, after, strict=True) if old != new}
    for record in model.decisions.records:
        record["paths"] = [renamed.get(p, p) for p in record["paths"]]


def _saved_candidates(model: ImageSimilarityModel, path: str | os.PathLike) -> None:
    """The copy candidates saved beside the model, held by its references when they are of this save."""
    try:
        data = storage.read_side_file(path, CANDIDATES_FILE)
        if data is not None and model._saved_as is not None:
            dedup.remember_saved(model.core, data, f"{path}/{CANDIDATES_FILE}", model._saved_as[1])
    except storage.ModelFormatError as exc:
        warnings.warn(f"{exc}; copy candidates will be searched again", RuntimeWarning, stacklevel=3)


def _saved_map(path: str | os.PathLike) -> MapLayout | None:
    """The map saved beside the model, if any; a damaged one is reported and left to be computed again."""
    try:
        data = storage.read_side_file(path, MAP_FILE)
        return MapLayout.from_bytes(data, f"{path}/{MAP_FILE}") if data is not None else None
    except storage.ModelFormatError as exc:
        # Unlike decisions, a map is derived from the embeddings: losing it costs time, not anything a person did.
        warnings.warn(f"{exc}; the map will be computed again", RuntimeWarning, stacklevel=3)
        return None


def _loaded(saved: storage.SavedModel) -> ImageSimilarityModel:
    embeddings, references, failures = saved.contents()
    manifest = Manifest.read(saved.manifest, saved.manifest_path)
    labels = references[storage.LABEL_COLUMN].to_numpy()
    try:
        check_metric(manifest.metric)
    except ValueError as exc:
        raise storage.ModelFormatError(f"{saved.manifest_path}: {exc}") from None
    projection, features = None, None
    if manifest.projection is not None:
        projection = Projection.load(saved, manifest.projection)
        features = saved.array(FEATURES_FILE, mmap=True)
        if features.shape != (len(embeddings), projection.input_dim):
            raise storage.ModelFormatError(f"{saved.folder} is damaged: {FEATURES_FILE} does not match embeddings.npy")
    try:
        index = read_index(saved, manifest.index, embeddings, manifest.metric)
    except IndexFileError as exc:
        raise storage.ModelFormatError(f"{saved.folder} is damaged: {exc}") from None
    core = References(
        features if features is not None else embeddings,
        labels,
        references.drop(columns=[storage.LABEL_COLUMN]),
        manifest.metric,
        spec_record=manifest.embedding_model,
        projection=projection,
        embeddings=embeddings,
        index=index,
        label_column=manifest.label_column,
        feature_column=manifest.feature_column,
        batch_size=manifest.batch_size,
        roots=manifest.roots,
    )
    return ImageSimilarityModel(core, failures, training_time=manifest.training_time, build_stats=manifest.build_stats)
