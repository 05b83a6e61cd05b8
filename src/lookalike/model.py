"""The user-facing model: create, query, similarity_graph, summary, save and load.

This is the only module that knows all the stages: ingest (what the user
passed), embed (pixels to vectors), index (vectors to neighbours) and storage.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lookalike import dedup, incremental, storage
from lookalike import graph as graph_edges
from lookalike.embed.batch import Embedded, embed_sources
from lookalike.embed.extractor import BATCH_SIZE, Embedder
from lookalike.embed.registry import DEFAULT_MODEL, Descriptor, ModelSpec, Preprocessing, get_spec
from lookalike.errors import InvalidArgument
from lookalike.index import ExactIndex, IndexFileError, build_index, check_metric, describe_index, read_index
from lookalike.index.factory import check_method, index_files, requested_method
from lookalike.ingest.download import DownloadSettings
from lookalike.ingest.report import failure_table
from lookalike.ingest.tables import Rows, as_query_rows, as_rows, find_feature_column, labels_of, stack_vectors
from lookalike.projection import Projection, fit_projection

__all__ = ["ImageSimilarityModel", "create", "load_model"]

_GRAPH_ALIASES = {"graph": "graph", "sgraph": "graph", "table": "table", "sframe": "table"}


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_radius(radius: Any) -> float | None:
    if radius is None:
        return None
    if isinstance(radius, bool) or not isinstance(radius, Real) or radius < 0:
        raise ValueError(f"radius must be a non-negative number or None, got {radius!r}")
    return float(radius)


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

    Attributes
    ----------
    embeddings : numpy.ndarray
        (n, d) float32 embedding of each reference, in reference order.
    labels : numpy.ndarray
        The label of each reference.
    references : pandas.DataFrame
        The reference table as kept by the model (label, path and metadata columns).
    failures : pandas.DataFrame
        Images that could not be embedded: ``source`` and ``reason``.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        references: pd.DataFrame,
        labels: np.ndarray,
        metric: str,
        spec: ModelSpec | None,
        failures: pd.DataFrame | None = None,
        label: str | None = None,
        feature: str | None = None,
        batch_size: int = BATCH_SIZE,
        spec_record: dict | None = None,
        training_time: float = 0.0,
        projection: Projection | None = None,
        features: np.ndarray | None = None,
        index=None,
    ):
        self.embeddings = embeddings
        #: The fitted PCA-whitening or LDA applied to every embedding (None: the network's output as is).
        self.projection = projection
        #: Each reference's raw embedding (before the projection): what a projection is (re)fitted on.
        self.features = embeddings if features is None else features
        self.references = references
        self.labels = np.asarray(labels)
        self.metric = check_metric(metric)
        self.label = label
        self.feature = feature
        self.batch_size = batch_size
        self.failures = failures if failures is not None else pd.DataFrame({"source": [], "reason": []})
        self.training_time = training_time
        #: How the last create() got its embeddings: counts "embedded", "from_cache", "failed".
        self.build_stats: dict[str, int] = {}
        self._spec = spec
        self._spec_record = spec_record or (spec.describe() if spec else None)
        self._embedder: Embedder | None = None
        self._index = index if index is not None else ExactIndex(embeddings, metric)

    # ---------------------------------------------------------------- embedding
    @property
    def model_name(self) -> str | None:
        """Name of the embedding network, or None for precomputed embeddings."""
        return self._spec_record["name"] if self._spec_record else None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def input_dim(self) -> int:
        """Length of the raw embeddings (the network's output) that queries given as vectors must have."""
        return int(self.features.shape[1])

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        return vectors if self.projection is None else self.projection.apply(vectors)

    def refit_projection(self) -> None:
        """Refit a PCA-whitening on the current references; the hook for ``add``/``remove``.

        Call after changing the references (``self.features`` and the rest):
        recomputes ``self.embeddings`` and the index. A learned (LDA)
        projection stays as it was trained and only projects the new
        references; a model without a projection is left as it is.
        """
        if self.projection is None:
            return
        if self.projection.kind == "whiten":
            self.projection = self.projection.refit(self.features)
        self.embeddings = self.projection.apply(self.features)
        self._index = build_index(self.embeddings, self.metric, requested_method(self._index))

    def _model_spec(self) -> ModelSpec | None:
        """The network, preprocessing and descriptor the references were embedded with; None for precomputed ones."""
        if self._spec is None and self._spec_record is not None:
            self._spec = _spec_for_record(self._spec_record)
        return self._spec

    def _get_embedder(self) -> Embedder:
        spec = self._model_spec()
        if spec is None:
            raise ValueError(
                "this model was built from precomputed embeddings (model=None): query it with "
                f"embeddings of length {self.dim}, not images"
            )
        if self._embedder is None:
            self._embedder = Embedder(spec)
        return self._embedder

    def _embed_rows(self, rows: Rows, verbose: bool, what: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """(embeddings, positions embedded, failures) for normalised rows."""
        if rows.vectors is not None:
            if rows.vectors.shape[1] != self.input_dim:
                raise ValueError(
                    f"{what} embeddings have length {rows.vectors.shape[1]}, but this model's "
                    f"({self.model_name or 'precomputed'}) have length {self.input_dim}"
                )
            return rows.vectors, np.arange(len(rows.vectors)), []
        embedder = self._get_embedder()
        result = embedder.extract(rows.table[rows.feature].tolist(), batch_size=self.batch_size, verbose=verbose)
        return result.embeddings, result.ok, result.failures

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
    ) -> pd.DataFrame:
        """The nearest references of each query image.

        Parameters
        ----------
        dataset : path, PIL image, bytes, numpy array, list of those, or pandas.DataFrame
            Query images (need not be references), or query embeddings.
        label : str, optional
            Column of a DataFrame ``dataset`` whose values name the queries;
            row numbers when None.
        k : int, default 5
            Neighbours per query (all references when k exceeds their number).
        radius : float, optional
            Only neighbours at most this far.
        verify : bool or lookalike.verify.Verifier, default False
            Geometric verification (``pip install 'lookalike[verify]'``, see
            docs/verify.md): the ``max(k, shortlist)`` nearest references are
            matched with the query by local features (SIFT + RANSAC, the
            mirrored query too) and re-ranked: verified ones (at least 15
            inliers) first, most inliers first, the others after in distance
            order. Adds an ``inliers`` column. A ``Verifier`` sets the options.
        shortlist : int, default 20
            With ``verify``: how many nearest references are verified per query.

        Returns
        -------
        pandas.DataFrame
            ``query_label, reference_label, distance, rank`` (rank 1 is nearest), and ``inliers`` with ``verify``.

        Examples
        --------
        >>> model.query("holiday.jpg", k=3)  # doctest: +SKIP
           query_label  reference_label  distance  rank
        0            0               17  12.61872     1
        """
        k = _check_k(k)
        radius = _check_radius(radius)
        rows = as_query_rows(dataset, self.feature, self.input_dim, label=label)
        query_labels = labels_of(rows.table, label, "query dataset", unique=False)
        vectors, positions, failures = self._embed_rows(rows, verbose, "query")
        vectors = self._project(vectors)
        sources = rows.table[rows.feature].tolist() if rows.feature else []
        for failure in failures:
            warnings.warn(f"query image {failure.source} skipped: {failure.reason}", RuntimeWarning, stacklevel=2)
        if len(positions) == 0:
            raise failures[0].error()
        inliers = None
        if verify:
            from lookalike.verify import verify_query

            queries = [sources[p] for p in positions] if sources else None
            distances, neighbours, inliers = verify_query(self, vectors, queries, k, verify, shortlist, verbose)
        else:
            distances, neighbours = self._index.search(vectors, k)
        return self._result_table(
            query_labels[positions], distances, neighbours, radius, "query_label", "reference_label", inliers
        )

    def _result_table(
        self,
        query_labels: np.ndarray,
        distances: np.ndarray,
        neighbours: np.ndarray,
        radius: float | None,
        src: str,
        dst: str,
        inliers: np.ndarray | None = None,
    ) -> pd.DataFrame:
        m, k = neighbours.shape
        table = pd.DataFrame(
            {
                src: np.repeat(query_labels, k),
                dst: self.labels[neighbours.ravel()] if k else self.labels[:0],
                "distance": distances.ravel(),
                "rank": np.tile(np.arange(1, k + 1), m),
            }
        )
        if inliers is not None:
            table["inliers"] = inliers.ravel()
        if radius is not None:
            table = table[table["distance"] <= radius].reset_index(drop=True)
        return table

    def similarity_graph(
        self,
        k: int = 5,
        radius: float | None = None,
        include_self_edges: bool = False,
        output_type: str = "graph",
        path: str | os.PathLike | None = None,
    ):
        """Each reference's ``k`` nearest other references, searched in blocks (never an n x n matrix).

        Parameters
        ----------
        k : int, default 5
        radius : float, optional
            Only edges at most this long.
        include_self_edges : bool, default False
            Keep each reference's edge to itself (distance 0, rank 1).
        output_type : {"graph", "table"}, default "graph"
            ``"graph"``: a networkx DiGraph on the labels, edges carrying
            ``distance`` and ``rank``. ``"table"``: a DataFrame
            ``__src_id, __dst_id, distance, rank``. Turi's ``"SGraph"`` and
            ``"SFrame"`` are accepted.
        path : str or path, optional
            With ``output_type="table"``: stream the edges to this ``.parquet``
            or ``.csv`` file block by block (never all in memory) and return
            its path; read it lazily with ``pyarrow.parquet.ParquetFile(path)``.

        Examples
        --------
        >>> model.similarity_graph(k=5, output_type="table", path="edges.parquet")  # doctest: +SKIP
        PosixPath('edges.parquet')
        """
        k = _check_k(k)
        radius = _check_radius(radius)
        kind = _GRAPH_ALIASES.get(str(output_type).lower())
        if kind is None:
            raise ValueError(
                f"output_type must be 'graph' or 'table' (or Turi's 'SGraph'/'SFrame'), got {output_type!r}"
            )
        n = len(self.labels)
        if path is not None:
            if kind != "table":
                raise ValueError("path= streams edges to a file: use output_type='table' with it")
            graph_edges.write_edges(self, path, k, radius, include_self_edges)
            return Path(path)
        edges = graph_edges.edge_table(self, k, radius, include_self_edges)
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
        self, threshold: float | None = None, keep: str = "resolution", k: int = 10, verify: Any = False
    ) -> pd.DataFrame:
        """Groups of near-duplicate references, each with a keeper: see :func:`lookalike.dedup.find_duplicates`.

        Examples
        --------
        >>> dups = model.find_duplicates(keep="size")  # doctest: +SKIP
        >>> dups[~dups.keeper].path.tolist()  # doctest: +SKIP
        """
        return dedup.find_duplicates(self, threshold=threshold, keep=keep, k=k, verify=verify)

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
        incremental.add(self, dataset, verbose=verbose, cache=cache, download=download)

    def remove(self, labels: Any) -> None:
        """Remove the references with these labels (each must exist, and be named once).

        Examples
        --------
        >>> model.remove(["IMG_0001", "IMG_0002"])  # doctest: +SKIP
        """
        incremental.remove(self, labels)

    def extract_features(self, dataset: Any, verbose: bool = True) -> np.ndarray:
        """Embed images with the model's network: a (n, d) float32 array.

        Rows of images that cannot be read are NaN, with a warning naming each one.
        """
        rows = as_query_rows(dataset, self.feature, self.input_dim)
        vectors, positions, failures = self._embed_rows(rows, verbose, "dataset")
        out = np.full((len(rows.table), self.input_dim), np.nan, dtype=np.float32)
        out[positions] = vectors
        for failure in failures:
            warnings.warn(
                f"image {failure.source} could not be embedded: {failure.reason}", RuntimeWarning, stacklevel=2
            )
        return out

    def query_text(self, text: str | list[str], k: int = 5, radius: float | None = None) -> pd.DataFrame:
        """The references that best match a description, for models with a text tower (``clip-vit-b-32``).

        Parameters
        ----------
        text : str or list of str
            One description per query; each names its rows in ``query_label``.
        k : int, default 5
        radius : float, optional

        Returns
        -------
        pandas.DataFrame
            ``query_label, reference_label, distance, rank``, as :meth:`query`.

        Examples
        --------
        >>> model = lk.create("photos/", model="clip-vit-b-32")  # doctest: +SKIP
        >>> model.query_text("a red dress", k=10)  # doctest: +SKIP
        """
        from lookalike.embed.zoo import text_encoder

        k = _check_k(k)
        radius = _check_radius(radius)
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"text must be a non-empty string or a list of them, got {text!r}")
        vectors = text_encoder(self._get_embedder().spec).encode(texts)
        # A projection is learned on image embeddings only (and LDA on image labels): it would not map
        # text into the same space. So text is compared with the raw image embeddings, exactly.
        index = self._index if self.projection is None else ExactIndex(self.features, self.metric)
        distances, neighbours = index.search(vectors, k)
        labels = np.asarray(texts, dtype=object)
        return self._result_table(labels, distances, neighbours, radius, "query_label", "reference_label")

    def export_onnx(self, path: str | os.PathLike, k: int = 5) -> os.PathLike:
        """Write one ONNX file that runs the whole query: uint8 pixels -> top-k references. See :mod:`lookalike.export`."""
        from lookalike.export import export_onnx

        return export_onnx(self, path, k=k)

    def export_coreml(self, path: str | os.PathLike, k: int = 5) -> os.PathLike:
        """Write a Core ML program (.mlpackage): image -> embedding + top-k references. See :mod:`lookalike.export_coreml`."""
        from lookalike.export_coreml import export_coreml

        return export_coreml(self, path, k=k)

    def show(self, results: pd.DataFrame, queries: Any = None, max_queries: int = 20):
        """Query or similarity-graph results as a thumbnail grid for notebooks. See :func:`lookalike.display.result_grid`."""
        from lookalike.display import result_grid

        return result_grid(self, results, queries=queries, max_queries=max_queries)

    def _repr_html_(self) -> str:
        from lookalike.display import summary_html

        return summary_html(self._summary_dict())

    # ----------------------------------------------------------------- summary
    def _summary_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name or "precomputed",
            "metric": self.metric,
            "method": self._index.method,
            "method_reason": getattr(self._index, "reason", None),
            "recall": getattr(self._index, "recall", None),
            "num_references": int(len(self.labels)),
            "num_features": self.dim,
            "projection": self.projection.kind if self.projection is not None else None,
            "num_failures": int(len(self.failures)),
            "label": self.label,
            "feature": self.feature,
            "training_time": round(float(self.training_time), 3),
        }

    def summary(self, output: str | None = None):
        """Describe the model, as Turi Create's ``summary``.

        Parameters
        ----------
        output : {None, "str", "dict"}
            None prints the summary, ``"str"`` returns it as text, ``"dict"`` as a dict.
        """
        values = self._summary_dict()
        if output == "dict":
            return values
        width = max(map(len, values))
        lines = ["Class                          : ImageSimilarityModel", ""]
        lines += [f"{key:<{width}} : {value}" for key, value in values.items()]
        text = "\n".join(lines)
        if output == "str":
            return text
        if output is not None:
            raise ValueError(f"output must be None, 'str' or 'dict', got {output!r}")
        print(text)
        return None

    def __repr__(self) -> str:
        return (
            f"ImageSimilarityModel(model={self.model_name or 'precomputed'!r}, metric={self.metric!r}, "
            f"references={len(self.labels)}, dim={self.dim}, failures={len(self.failures)})"
        )

    # ------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> None:
        """Save to a directory (``manifest.json``, ``embeddings.npy``, parquet tables), atomically."""
        references = self.references.copy()
        references[storage.LABEL_COLUMN] = self.labels
        manifest = {
            "metric": self.metric,
            "count": int(len(self.labels)),
            "dim": self.dim,
            "label_column": self.label,
            "feature_column": self.feature,
            "batch_size": self.batch_size,
            "training_time": self.training_time,
            "build_stats": self.build_stats,
            "embedding_model": self._spec_record,
            "index": describe_index(self._index),
        }
        extra = {}
        if self.projection is not None:
            manifest["projection"] = self.projection.record()
            extra = {**self.projection.files(), FEATURES_FILE: storage.npy_bytes(self.features)}
        extra.update(index_files(self._index))
        storage.save(path, manifest, self.embeddings, references, self.failures, extra_files=extra)

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


def _spec_for_record(record: dict) -> ModelSpec:
    """The registry spec matching a saved model's embedding-model record, or a clear error."""
    name = record["name"]
    if name.startswith("onnx:"):
        spec = get_spec(record["source"], Preprocessing.from_dict(record["preprocessing"]))
    else:
        try:
            spec = get_spec(name)
        except ValueError:
            raise ValueError(f"this model was built with {name!r}, which this lookalike does not know") from None
    # Manifests written before descriptors existed hold none: their embeddings are the plain ones, whatever the default.
    spec = spec.with_descriptor(record.get("descriptor") or "plain").with_precision(record.get("precision") or "fp32")
    if spec.fingerprint != record.get("fingerprint"):
        raise ValueError(
            f"this model's embeddings were made by {name!r} with fingerprint {record.get('fingerprint')}, but "
            f"{name!r} here has fingerprint {spec.fingerprint} (other weights or preprocessing): its query "
            "embeddings would not be comparable. Rebuild the model with this version."
        )
    return spec


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
    engine: str = "local",
    ray_address: str | None = None,
    ray_work_dir: str | os.PathLike | None = None,
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
    engine : {"local", "ray"}, default "local"
        ``"ray"`` embeds on a Ray cluster (``pip install 'lookalike[ray]'``,
        see ``docs/distributed.md``): an actor pool runs the same extractor,
        writes parquet shards, and this process builds the model from them.
        Folders, tables and ``s3://``/``gs://`` prefixes are accepted.
    ray_address : str, optional
        The cluster to join (``"ray://head:10001"``, ``"auto"``); a local one
        is started when None and no Ray session is open.
    ray_work_dir : str or path, optional
        Where the Ray engine writes its shards (a re-run after a crash resumes
        from them); shared storage on a multi-node cluster. Default: a folder
        under ``config.cache_dir()`` named after the job.
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
    projection : lookalike.projection.Projection, optional
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
    check_metric(metric)
    check_method(method)
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if model is None:
        spec = None
    elif isinstance(model, ModelSpec) and descriptor is None:
        spec = model.with_precision(precision)  # a spec carries its descriptor (lk.match embeds as a saved model did)
    else:
        spec = get_spec(model, preprocessing).with_descriptor(descriptor).with_precision(precision)
    wanted = Descriptor.resolve(descriptor or {})  # model=None: nothing unless asked
    if spec is None and wanted.in_graph is not None:
        raise ValueError("model=None indexes precomputed embeddings: of descriptor options only whiten applies")
    whiten = (spec.descriptor if spec is not None else wanted).whiten
    if train_label is not None and projection is not None:
        raise ValueError("pass train_label= (learn a projection here) or projection= (use a fitted one), not both")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        from lookalike.distributed import list_inputs

        dataset = list_inputs(dataset)  # object-store prefixes -> one URI per image
    rows = as_rows(dataset, feature, vectors_only=model is None, label=label)
    load_failures = rows.failures or []
    if len(rows.table) == 0:
        detail = f" ({len(load_failures)} files could not be read, first: {load_failures[0]})" if load_failures else ""
        raise InvalidArgument(f"dataset is empty: no images found in {dataset!r}{detail}")
    labels = labels_of(rows.table, label, "dataset")
    if spec is None:
        if rows.vectors is None:
            column = find_feature_column(rows.table, feature, want="vector", label=label)
            rows = Rows(rows.table, None, stack_vectors(rows.table[column].tolist(), f"column {column!r}"))
        embedded = Embedded(rows.vectors, np.arange(len(rows.vectors)))
    else:
        if rows.vectors is not None:
            raise ValueError("the dataset holds embeddings: pass model=None to index precomputed embeddings")
        images = rows.table[rows.feature].tolist()
        if engine == "ray":
            from lookalike.distributed import embed_on_ray

            embedded = embed_on_ray(
                spec, images, batch_size, verbose, cache, download, address=ray_address, work_dir=ray_work_dir
            )
        else:
            embedded = embed_sources(Embedder(spec), images, batch_size, verbose, cache, download)
    # One assembly step for every engine: embeddings by input position -> references, labels, failures.
    vectors, positions, failures, headers = embedded.vectors, embedded.positions, embedded.failures, embedded.headers
    reused = embedded.stats.get("from_cache", 0) + embedded.stats.get("from_shards", 0)
    skipped = load_failures + [replace(f, id=labels[f.position]) for f in failures]
    if len(positions) == 0:
        raise InvalidArgument(f"none of the {len(rows.table)} images could be read; first failure: {skipped[0]}")
    if failures and verbose:
        warnings.warn(f"{len(skipped)} images skipped (see model.failures)", RuntimeWarning, stacklevel=2)
    references = _storable_columns(rows.table.iloc[positions], rows.feature)
    if spec is not None:
        for column in [c for c in headers.columns if c not in references.columns]:
            references[column] = headers[column].to_numpy()
    features = np.ascontiguousarray(vectors, dtype=np.float32)
    if train_label is not None:
        if train_label not in rows.table.columns:
            raise ValueError(f"train_label {train_label!r} is not a column of the dataset: {list(rows.table.columns)}")
        references[train_label] = rows.table[train_label].to_numpy()[positions]
        if references[train_label].isna().any():
            raise ValueError(f"train_label column {train_label!r} has missing values: every reference needs a class")
        projection = fit_projection("lda", features, references[train_label].to_numpy(), label_column=train_label)
    elif projection is None and whiten:
        projection = fit_projection("whiten", features)
    model = ImageSimilarityModel(
        embeddings=features if projection is None else projection.apply(features),
        features=features,
        projection=projection,
        references=references,
        labels=labels[positions],
        metric=metric,
        spec=spec,
        failures=failure_table(skipped, with_id=label is not None),
        label=label,
        feature=rows.feature,
        batch_size=int(batch_size),
        training_time=time.perf_counter() - started,
    )
    model._index = build_index(model.embeddings, metric, method)
    model.training_time = time.perf_counter() - started
    model.build_stats = {
        "embedded": int(len(positions) - reused),
        "from_cache": 0,
        **embedded.stats,
        "failed": int(len(skipped)),
    }
    return model


def load_model(path: str | os.PathLike) -> ImageSimilarityModel:
    """Load a model saved with :meth:`ImageSimilarityModel.save`.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    lookalike.storage.ModelFormatError
        ``path`` is not a lookalike model, is damaged, or is from a newer lookalike.
    """
    manifest, embeddings, references, failures = storage.load(path)
    labels = references[storage.LABEL_COLUMN].to_numpy()
    metric = manifest.get("metric")
    try:
        check_metric(metric)
    except ValueError as exc:
        raise storage.ModelFormatError(f"{path}: {exc}") from None
    projection, features = None, None
    if manifest.get("projection") is not None:
        try:
            projection = Projection.load(path, manifest["projection"])
            features = np.load(Path(path) / FEATURES_FILE, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise storage.ModelFormatError(f"{path} is damaged: {exc}") from None
        if features.shape != (len(embeddings), projection.input_dim):
            raise storage.ModelFormatError(f"{path} is damaged: {FEATURES_FILE} does not match embeddings.npy")
    try:
        index = read_index(Path(path), manifest.get("index"), embeddings, metric)
    except IndexFileError as exc:
        raise storage.ModelFormatError(f"{path} is damaged: {exc}") from None
    model = ImageSimilarityModel(
        index=index,
        embeddings=embeddings,
        features=features,
        projection=projection,
        references=references.drop(columns=[storage.LABEL_COLUMN]),
        labels=labels,
        metric=metric,
        spec=None,
        failures=failures,
        label=manifest.get("label_column"),
        feature=manifest.get("feature_column"),
        batch_size=int(manifest.get("batch_size", BATCH_SIZE)),
        spec_record=manifest.get("embedding_model"),
        training_time=float(manifest.get("training_time", 0.0)),
    )
    model.build_stats = dict(manifest.get("build_stats") or {})
    return model
