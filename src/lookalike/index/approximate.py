"""Approximate nearest-neighbour search with faiss (HNSW, IVF or any faiss factory string).

Answers have the same shape and the same distances as :class:`~lookalike.index.exact.ExactIndex`:
faiss proposes candidates, and each candidate's distance is re-measured with the exact
index's own formula (:func:`~lookalike.index.metrics.exact_distances`), so an approximate
answer differs from the exact one only by the neighbours it missed (its recall).

How each metric is handed to faiss:

- ``euclidean``: L2 on the raw vectors.
- ``cosine``: L2 on unit-normalised copies (same order as 1 - cos; L2 graphs behave better than inner product).
- ``dot``: inner product on the raw vectors.

Removal: IVF indexes drop vectors for real (``remove_ids``; vectors carry explicit ids).
HNSW graphs cannot drop a node, so removed vectors become tombstones, skipped at search
time by an ``IDSelector``; once tombstones outnumber live vectors the graph is rebuilt.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from lookalike.errors import IndexFileError, InvalidArgument
from lookalike.index.base import BuildInfo
from lookalike.index.checkpoint import CHECKPOINT_ROWS, BuildCheckpoint
from lookalike.index.exact import MAX_PER_QUERY, ExactIndex
from lookalike.index.metrics import check_metric, exact_distances_at
from lookalike.index.rows import appended, without

if TYPE_CHECKING:
    from lookalike.store.storage import SavedModel

#: Named methods -> faiss factory strings (IVF's list count depends on n, see :func:`factory_string`):
#: ``ivf`` keeps each vector whole (Flat); ``ivf-sq8`` keeps one byte per value and ``ivf-pq`` a product-quantised
#: code, both re-ranked from the full vectors, so only the compact codes are a second copy in memory.
NAMED = ("hnsw", "ivf", "ivf-sq8", "ivf-pq")
#: Bytes of compressed codes an index aims to hold: ``auto`` takes SQ8 while its codes fit, and ``ivf-pq`` the
#: longest code that fits (10M references of 512 values take PQ128, 1.3 GB), which leaves a 4 GB serving budget
#: room for ids, labels and the query path.
CODE_BUDGET = 2 << 30
#: HNSW links per node: M=32 reached recall@10 0.97-1.0 at efSearch 16-32 on 100k clustered 512-d vectors (benchmarks/scale.py).
HNSW_M = 32
#: Extra candidates fetched per query, so near-ties are settled by the exact re-measure.
_MARGIN = 8
#: Candidates per answer fetched for the exact re-measure to re-order, by bytes stored per value: whole vectors
#: need only the margin, one byte per value (SQ8) twice the answers, shorter codes (PQ) ten times. On 1M clustered
#: 512-d vectors at nprobe 1, recall@10 was 0.951 for Flat and 0.959 for SQ8 with 19 candidates, and for PQ128
#: 0.65 with 19, 0.85 with 50, 0.93 with 100 (benchmarks/graph_scale.py data).
_RERANK = ((4.0, 1), (1.0, 2), (0.0, 10))
#: Search-effort ladder tried at build time until the sampled recall reaches the target.
_EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
#: Adds of fewer vectors than this run on one thread: 3000 x 32-d into HNSW took 0.19 s CPU on one
#: thread and 0.72 s on two (a busy 2-core machine), for a longer wall time too.
_SMALL = 20_000
_NPROBE_LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def factory_string(method: str, n: int, dim: int = 512) -> str:
    """The faiss factory string for a named method (or ``method`` itself for an expert string).

    ``ivf-pq`` takes the longest code (bytes per vector) that divides ``dim`` and keeps ``n`` codes
    within :data:`CODE_BUDGET` bytes, from ``dim / 4`` down to 8: four values
    per byte at most, since PQ's training time grows with the code (PQ256 of 512-d took 143 s at 1M, for the
    recall PQ128 reached after re-ranking).

    Examples
    --------
    >>> factory_string("hnsw", 10_000)
    'HNSW32'
    >>> factory_string("ivf", 1_000_000)
    'IVF1000,Flat'
    >>> factory_string("ivf-pq", 10_000_000, dim=512)
    'IVF3162,PQ128'
    """
    if method == "hnsw":
        return f"HNSW{HNSW_M}"
    # ~sqrt(n) lists: k-means training and the coarse search stay cheap on 2 cores.
    lists = int(np.clip(round(np.sqrt(max(n, 1))), 1, 65536))
    if method == "ivf":
        return f"IVF{lists},Flat"
    if method == "ivf-sq8":
        return f"IVF{lists},SQ8"
    if method == "ivf-pq":
        code = max(dim // 4, 1)
        while code > 8 and (dim % code or code * n > CODE_BUDGET):
            code -= 1
        return f"IVF{lists},PQ{code}"
    return method


def training_needs(index: faiss.Index) -> list[tuple[int, str]]:
    """``(vectors, what)`` for each part of a faiss index that k-means trains: what it needs at the least.

    Examples
    --------
    >>> training_needs(faiss.index_factory(16, "IVF64,PQ4"))
    [(64, 'its 64 inverted lists'), (256, 'the 256 centroids of each of its 4 product-quantiser parts')]
    """
    needs = []
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        needs.append((int(ivf.nlist), f"its {ivf.nlist} inverted lists"))
    pq = getattr(faiss.downcast_index(ivf or index), "pq", None)
    if pq is not None:
        needs.append((int(pq.ksub), f"the {pq.ksub} centroids of each of its {pq.M} product-quantiser parts"))
    return needs


def check_trainable(method: str, index: faiss.Index, count: int) -> None:
    """Refuse, before any training, an index that ``count`` vectors cannot train (more IVF lists or PQ centroids
    than vectors: faiss would fail half-way with a C++ message)."""
    lists = int(np.clip(round(np.sqrt(max(count, 1))), 1, 65536))  # as factory_string would take
    for needed, what in training_needs(index):
        if count < needed:
            instead = (
                f"'IVF{lists},Flat'" if "lists" in what else f"codes without product quantisation ('IVF{lists},SQ8')"
            )
            raise InvalidArgument(
                f"method {method!r} cannot be trained on {count} vectors: {what} need at least {needed}; "
                f"use {instead} or method 'auto'"
            )


def _faiss_metric(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "dot" else faiss.METRIC_L2


def _prepared(metric: str, vectors: np.ndarray) -> np.ndarray:
    """The float32 rows faiss stores for ``metric`` (unit rows for cosine; zero rows stay zero)."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric != "cosine":
        return rows
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


class ApproximateIndex:
    """A faiss index over (n, d) float32 references with :class:`ExactIndex`'s interface.

    Parameters
    ----------
    vectors : numpy.ndarray
        (n, d) float32 references (kept by reference: the exact re-measure reads them).
    metric : {"euclidean", "cosine", "dot"}
    method : str
        ``"hnsw"``, ``"ivf"`` or a faiss factory string such as ``"IVF1024,Flat"`` or ``"HNSW16"``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> refs = rng.standard_normal((2000, 16)).astype(np.float32)
    >>> index = ApproximateIndex(refs, "cosine", "hnsw")
    >>> distances, positions = index.search(refs[:2], k=3)
    >>> positions[:, 0].tolist()
    [0, 1]
    """

    def __init__(
        self,
        vectors: np.ndarray,
        metric: str,
        method: str,
        build: BuildInfo | None = None,
        _index: faiss.Index | None = None,
        _ids=None,
    ):
        self.metric = check_metric(metric)
        self.vectors = vectors
        self.method = method
        self.build = build or BuildInfo(method, "requested")
        self.spec = factory_string(method, len(vectors), vectors.shape[1])
        self._viewed = False  # True when faiss maps the saved file: copy before changing it
        #: Parts of an interrupted build found on disk and reused (see :mod:`lookalike.index.checkpoint`).
        self.resumed_parts = 0
        if _index is None:
            _index = self._build(vectors)
            _ids = np.arange(len(vectors), dtype=np.int64)
        self._index = _index
        self._ivf = faiss.try_extract_index_ivf(_index)
        #: faiss id of the reference at each position, ascending (appends get larger ids).
        self._ids = np.asarray(_ids, dtype=np.int64)
        self._set_tombstones()
        self.search_effort = self._default_effort()
        self._rerank = _rerank_factor(_code_size(_index), vectors.shape[1])
        self._exact_index: ExactIndex | None = None

    # ------------------------------------------------------------------ build
    def _build(self, vectors: np.ndarray) -> faiss.Index:
        checkpoint = None
        if len(vectors) >= CHECKPOINT_ROWS and "IVF" in self.spec.split(",")[0]:
            checkpoint = BuildCheckpoint.for_build(vectors, self.metric, self.spec)
        if checkpoint is None:
            index = self._trained(vectors)
            self._add_to(index, vectors, np.arange(len(vectors), dtype=np.int64))
            return index
        index = checkpoint.filled(checkpoint.trained(lambda: self._trained(vectors)), vectors, self._add_to)
        self.resumed_parts = checkpoint.resumed_parts
        return index

    def _trained(self, vectors: np.ndarray) -> faiss.Index:
        """An empty index of ``self.spec``, trained on a sample of ``vectors``."""
        try:
            index = faiss.index_factory(vectors.shape[1], self.spec, _faiss_metric(self.metric))
        except RuntimeError as exc:
            raise InvalidArgument(
                f"method {self.method!r} is not a faiss index factory string: {_first_line(exc)}"
            ) from None
        check_trainable(self.method, index, len(vectors))
        coded = faiss.downcast_index(faiss.try_extract_index_ivf(index) or index)
        if getattr(coded, "do_polysemous_training", False):
            coded.do_polysemous_training = False  # 20x the training time, for a search mode lookalike never uses
        if not index.is_trained:
            try:
                index.train(_prepared(self.metric, _training_sample(vectors, self.spec)))
            except RuntimeError as exc:  # any other need of a factory string's parts the data cannot meet
                raise InvalidArgument(
                    f"method {self.method!r} cannot be trained on {len(vectors)} vectors: {_first_line(exc)}"
                ) from None
        return index

    def _add_to(self, index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, block: int = 65536) -> None:
        ivf = faiss.try_extract_index_ivf(index) is not None
        threads = faiss.omp_get_max_threads()
        if len(vectors) < _SMALL:  # OpenMP's start-up and spinning cost more than a small add gains
            faiss.omp_set_num_threads(1)
        try:
            for start in range(0, len(vectors), block):  # blocks: the normalised copy stays small
                rows = _prepared(self.metric, vectors[start : start + block])
                if ivf:
                    index.add_with_ids(rows, ids[start : start + block])
                else:  # sequential ids: a graph never drops nodes, so the next id is ntotal
                    index.add(rows)
        finally:
            faiss.omp_set_num_threads(threads)

    def _set_tombstones(self) -> None:
        """Ids in the faiss index that no longer belong to a reference, and the selector that skips them."""
        if self._ivf is not None:
            self._dead = np.zeros(0, np.int64)
        else:
            self._dead = np.setdiff1d(np.arange(self._index.ntotal, dtype=np.int64), self._ids, assume_unique=True)
        # faiss does not own a selector's parts: keep the batch referenced as long as the selector.
        self._dead_batch = faiss.IDSelectorBatch(self._dead) if len(self._dead) else None
        self._selector = faiss.IDSelectorNot(self._dead_batch) if len(self._dead) else None

    def _default_effort(self) -> int | None:
        if self._ivf is not None:
            return int(min(self._ivf.nlist, 8))
        if isinstance(self._index, faiss.IndexHNSW):
            return 32
        return None

    # ----------------------------------------------------------------- search
    def __len__(self) -> int:
        return len(self._ids)

    def _params(self, k: int, effort: int | None):
        if self._ivf is not None:
            return faiss.SearchParametersIVF(nprobe=int(effort or 1), sel=self._selector)
        if isinstance(self._index, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(efSearch=int(max(effort or 16, k)), sel=self._selector)
        return faiss.SearchParameters(sel=self._selector) if self._selector is not None else None

    def search(self, queries: np.ndarray, k: int, effort: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest references of each query (approximately).

        Parameters
        ----------
        queries : (m, d) array
        k : int
        effort : int, optional
            efSearch (HNSW) or nprobe (IVF); the tuned ``search_effort`` when None.

        Returns
        -------
        distances : (m, min(k, n)) float64, exact distances of the returned references
        positions : (m, min(k, n)) int64, ordered by (distance, position)
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n, m = len(self), len(queries)
        k = min(k, n)
        if k == 0 or m == 0:
            return np.empty((m, k), np.float64), np.empty((m, k), np.int64)
        effort = self.search_effort if effort is None else effort
        distances, positions = self._reranked(queries, k, effort)
        # Rows with fewer than k answers: the probed lists were small (IVF) or tombstones crowded the
        # graph (HNSW). Search those again harder, and exactly as a last resort.
        short = np.flatnonzero(~np.isfinite(distances[:, -1]))
        while len(short) and effort is not None and effort < self._max_effort():
            effort = min(effort * 4, self._max_effort())
            distances[short], positions[short] = self._reranked(queries[short], k, effort)
            short = short[~np.isfinite(distances[short, -1])]
        if len(short):
            distances[short], positions[short] = self._exact().search(queries[short], k)
        return distances, positions

    def range_search(
        self, queries: np.ndarray, threshold: float, max_per_query: int = MAX_PER_QUERY
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every reference within ``threshold`` that the index finds, as :meth:`ExactIndex.range_search` returns them.

        The k-nearest search asked for more neighbours (32, then 4x as many)
        for the queries whose farthest answer is still within the threshold:
        the answers are the exactly re-measured ones of that search, so the
        index's recall, its ``search_effort`` and its tombstones apply as
        they do to :meth:`search`; a compressed index's approximate
        distances are never compared with the threshold.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        cap = min(max_per_query, len(self))
        rows, k = np.arange(len(queries)), min(32, cap)
        answers: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0, np.int64))] * len(queries)
        while len(rows) and k:
            distances, positions = self.search(queries[rows], k)
            for row, found, where in zip(rows, distances, positions, strict=True):
                within = found <= threshold
                answers[row] = (found[within], where[within])
            crowded = (distances[:, -1] <= threshold) & (k < cap)
            rows, k = rows[crowded], min(k * 4, cap)
        lims = np.cumsum([0] + [len(found) for found, _ in answers]).astype(np.int64)
        return lims, np.concatenate([a[0] for a in answers]).astype(np.float64), np.concatenate([a[1] for a in answers])

    def _reranked(self, queries: np.ndarray, k: int, effort: int | None) -> tuple[np.ndarray, np.ndarray]:
        """faiss's candidates re-measured exactly from the full vectors and ordered; missing answers are inf."""
        n = len(self)
        fetch = min(self.rerank_depth(k), n)
        _, ids = self._index.search(_prepared(self.metric, queries), fetch, params=self._params(fetch, effort))
        found = ids >= 0
        if self._ids[-1] == n - 1:  # ids are positions until a reference is removed: no lookup
            found &= ids < n
            positions = np.where(found, ids, 0)
        else:
            positions = np.minimum(np.searchsorted(self._ids, np.where(found, ids, 0)), n - 1)
            found &= self._ids[positions] == ids
        precise = exact_distances_at(self.metric, queries, self.vectors, positions)
        precise[~found] = np.inf
        order = np.lexsort((positions, precise), axis=-1)[:, :k]
        return np.take_along_axis(precise, order, 1), np.take_along_axis(positions, order, 1)

    def rerank_depth(self, k: int) -> int:
        """Candidates faiss proposes for ``k`` answers: a margin for near-ties, and more for compressed codes,
        whose approximate distances misorder neighbours that the exact re-measure puts right."""
        return k * self._rerank + _MARGIN

    def _max_effort(self) -> int:
        if self._ivf is not None:
            return int(self._ivf.nlist)
        return _EF_LADDER[-1] if isinstance(self._index, faiss.IndexHNSW) else 0

    def _exact(self) -> ExactIndex:
        """Exact search over the references (built on first use: its norms cost a pass over them)."""
        if self._exact_index is None:
            self._exact_index = ExactIndex(self.vectors, self.metric)
        return self._exact_index

    # ----------------------------------------------------------- add / remove
    def _own(self) -> None:
        """Copy a memory-mapped index into memory before changing it (faiss cannot grow a mapped file)."""
        if self._viewed:
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            self._ivf = faiss.try_extract_index_ivf(self._index)
            self._viewed = False

    def add(self, vectors: np.ndarray) -> None:
        """Append references (they take the next positions)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return
        self._own()
        start = int(self._ids[-1]) + 1 if len(self._ids) else int(self._index.ntotal)
        start = max(start, int(self._index.ntotal))
        ids = np.arange(start, start + len(vectors), dtype=np.int64)
        self._add_to(self._index, vectors, ids)
        self._ids = np.concatenate([self._ids, ids])
        self.vectors = appended(self.vectors, vectors)
        self._exact_index = None

    def remove(self, positions: np.ndarray) -> None:
        """Drop the references at ``positions``; later references move up."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        if len(positions) == 0:
            return
        self._own()
        gone = self._ids[positions]
        if self._ivf is not None:
            self._index.remove_ids(faiss.IDSelectorBatch(gone))
        self._ids = np.delete(self._ids, positions)
        self.vectors = without(self.vectors, positions)
        self._exact_index = None
        self._set_tombstones()
        if len(self._dead) > len(self._ids):  # search would mostly skip tombstones: rebuild the graph
            self._index = self._build(self.vectors)
            self._ids = np.arange(len(self.vectors), dtype=np.int64)
            self._set_tombstones()

    # ------------------------------------------------------------- save/load
    def record(self) -> dict[str, Any]:
        """What the manifest records: the method, how it was chosen, its faiss spec and search effort."""
        return {
            "method": self.method,
            **self.build.record(),
            "spec": self.spec,
            "search_effort": self.search_effort,
            "effort_name": "nprobe" if self._ivf is not None else "efSearch",
            "tombstones": int(len(self._dead)),
        }

    def files(self) -> dict:
        """The files a saved model holds for this index: name -> array, or function writing the file to a path."""
        return {
            "index.faiss": lambda path: faiss.write_index(self._index, os.fspath(path)),
            "index_ids.npy": self._ids,
        }

    @classmethod
    def read(
        cls, saved: SavedModel, vectors: np.ndarray, metric: str, method: str, record: dict, build: BuildInfo
    ) -> ApproximateIndex:
        """Read an index written by :meth:`files`, memory-mapped where faiss allows.

        Raises
        ------
        IndexFileError
            The file is not a faiss index or does not match ``vectors``.
        ModelFormatError
            A file is missing or damaged, or the record's search effort is unusable.
        """
        effort = record.get("search_effort")  # checked with the rest of the record (index.base.build_info_of)
        ids = saved.array("index_ids.npy")
        path = saved.path("index.faiss")
        index, viewed = None, False
        for flag in (getattr(faiss, "IO_FLAG_MMAP_IFC", None), 0):
            if flag is None:
                continue
            try:
                index, viewed = faiss.read_index(os.fspath(path), flag), bool(flag)
                break
            except RuntimeError as exc:
                error = exc
        if index is None:
            raise IndexFileError(f"{path.name} is damaged or not a faiss index ({_first_line(error)})")
        live = index.ntotal if faiss.try_extract_index_ivf(index) is not None else len(ids)
        if ids.dtype != np.int64 or ids.shape != (len(vectors),) or live != len(vectors) or index.d != vectors.shape[1]:
            raise IndexFileError(
                f"{path.name} holds {index.ntotal} vectors of length {index.d} and index_ids.npy {ids.shape}, "
                f"but the model has {vectors.shape}"
            )
        self = cls(vectors, metric, method, build, _index=index, _ids=ids)
        self._viewed = viewed
        self.spec = record.get("spec") or self.spec
        if effort is not None:
            self.search_effort = effort
        return self

    def efforts(self) -> tuple[int, ...]:
        """Search efforts to try, cheapest first (empty when the index has no such knob)."""
        if self._ivf is not None:
            return tuple(p for p in _NPROBE_LADDER if p <= self._ivf.nlist) or (int(self._ivf.nlist),)
        if isinstance(self._index, faiss.IndexHNSW):
            return _EF_LADDER
        return ()


def _training_sample(vectors: np.ndarray, spec: str, per_list: int = 40) -> np.ndarray:
    """Enough rows to train the coarse quantizer (faiss wants >= 39 per list), not all of them."""
    lists = [int(part[3:]) for part in spec.split(",") if part.startswith("IVF") and part[3:].isdigit()]
    want = max(lists[0] * per_list if lists else 0, 20_000)
    if len(vectors) <= want:
        return vectors
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), want, replace=False))
    return vectors[rows]


def _rerank_factor(code_size: int, dim: int) -> int:
    return next(factor for bytes_per_value, factor in _RERANK if code_size >= bytes_per_value * dim)


def _code_size(index: faiss.Index) -> int:
    """Bytes faiss stores per vector (4 x d for Flat storage)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return int(ivf.code_size)
    storage = getattr(faiss.downcast_index(index), "storage", None)
    try:
        return int(faiss.downcast_index(storage).sa_code_size() if storage is not None else index.sa_code_size())
    except RuntimeError:  # an index type that does not say: treat its codes as lossy
        return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
