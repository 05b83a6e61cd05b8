"""Pick and build an index from a method name or faiss factory string, like ``faiss.index_factory``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import InvalidArgument
from lookalike.index.approximate import CODE_BUDGET, NAMED, ApproximateIndex, check_trainable, factory_string
from lookalike.index.base import BuildInfo, Index, build_info_of
from lookalike.index.exact import ExactIndex
from lookalike.index.recall import tune

if TYPE_CHECKING:
    from lookalike.store.storage import SavedModel

METHODS = ("auto", "brute_force", *NAMED)
#: ``auto`` builds IVF once the references hold this many values (count x dimension): 50,000
#: references of 512-d, 20,000 of the default network's 1280-d. Exact search costs time in proportion
#: to count x dimension: measured by benchmarks/scale.py (quiet 2-core machine, 1280-d,
#: results/scale_1280.json) at 9.7 ms per query (534 queries/s in batch) at 50k and 3.8 ms (1,170/s)
#: at 20k, so a similarity graph over 50k 1280-d references takes ~95 s exactly against ~13 s for
#: IVF (built in 1.6 s, 0.26 ms per query at recall@10 0.997).
AUTO_MAX_EXACT_VALUES = 50_000 * 512
#: What ``auto`` builds above the threshold: IVF, not HNSW. At 100k it built 6x faster (6 s vs 36 s CPU; HNSW
#: inserts into a graph one vector at a time), answered as fast (0.65 vs 0.53 ms) and drops removed vectors for
#: real; its search effort is re-tuned on add/remove, so the recall it reports holds as the references change.
#: Its lists hold compressed codes re-ranked from the full vectors, never a second full copy: SQ8 (a quarter of
#: the vectors' size) while those codes fit :data:`~lookalike.index.approximate.CODE_BUDGET`, product quantisation
#: beyond. On 1M clustered 512-d vectors IVF1000,SQ8 reached recall@10 0.959 at nprobe 1 where IVF1000,Flat reached
#: 0.951, scanning faster (benchmarks/graph_scale.py).


def exact_limit(dim: int) -> int:
    """How many references of ``dim`` values ``auto`` still searches exactly (see :data:`AUTO_MAX_EXACT_VALUES`)."""
    return max(1, AUTO_MAX_EXACT_VALUES // max(int(dim), 1))


def choose_method(method: str, n: int, dim: int = 512) -> tuple[str, str]:
    """(method, reason) for a requested ``method`` and ``n`` references of ``dim`` values.

    Examples
    --------
    >>> choose_method("auto", 5_000)[0]
    'brute_force'
    >>> choose_method("auto", 30_000, dim=1280)[0]
    'ivf-sq8'
    >>> choose_method("auto", 10_000_000, dim=512)[0]
    'ivf-pq'
    """
    if not isinstance(method, str) or not method:
        raise InvalidArgument(f"method must be one of {METHODS} or a faiss factory string, got {method!r}")
    if method != "auto":
        return method, "requested"
    limit = exact_limit(dim)
    if n < limit:
        return "brute_force", f"auto: {n} references < {limit} of {dim}-d, exact search is fast enough"
    if n * dim <= CODE_BUDGET:
        return "ivf-sq8", f"auto: {n} references >= {limit} of {dim}-d, approximate search pays; one byte per value"
    return "ivf-pq", (
        f"auto: {n} references of {dim}-d: one byte per value would take {n * dim / 2**30:.1f} GiB, "
        f"more than {CODE_BUDGET / 2**30:.0f} GiB: product-quantised codes"
    )


def build_index(vectors: np.ndarray, metric: str = "euclidean", method: str = "auto", recall_k: int = 10) -> Index:
    """An index over ``vectors``: exact, or approximate with its recall measured and search effort tuned.

    Parameters
    ----------
    vectors : (n, d) float32 array
    metric : {"euclidean", "cosine", "dot"}
    method : str, default "auto"
        ``"auto"``, ``"brute_force"``, ``"hnsw"``, ``"ivf"`` or a faiss factory string (``"IVF256,Flat"``).
    recall_k : int, default 10
        k of the recall@k measured at build time.

    Returns
    -------
    ExactIndex or ApproximateIndex
        With ``build``: the method asked for, why this one, the recall measured (None for exact search).

    Examples
    --------
    >>> refs = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    >>> build_index(refs, "euclidean", "auto").method
    'brute_force'
    """
    chosen, reason = choose_method(check_method(method, vectors.shape[1]), len(vectors), vectors.shape[1])
    if chosen == "brute_force":
        return ExactIndex(vectors, metric, BuildInfo(method, reason))
    index = ApproximateIndex(vectors, metric, chosen, BuildInfo(method, reason))
    index.build.recall = tune(index, k=recall_k)
    return index


def read_index(saved: SavedModel, record: dict | None, vectors: np.ndarray, metric: str) -> Index:
    """The index a saved model's manifest records: exact, or read back from its faiss file.

    Raises
    ------
    IndexFileError
        The index file does not match the embeddings.
    ModelFormatError
        The manifest's record of the index is malformed, or an index file is missing or damaged.
    """
    record = record or {}
    build = build_info_of(record, saved.manifest_path)
    method = record.get("method") or "brute_force"
    if method == "brute_force":
        return ExactIndex(vectors, metric, build)
    return ApproximateIndex.read(saved, vectors, metric, method, record, build)


def after_change(index: Index, vectors: np.ndarray, metric: str) -> Index:
    """The index to use once references were added or removed in place.

    An ``auto`` index whose size crossed :func:`exact_limit` is rebuilt with the
    method ``auto`` now picks (a collection of 512-d vectors grown past 50k by ``add`` becomes IVF);
    otherwise an approximate index keeps its structure and has its recall re-measured.
    """
    if index.build.requested == "auto":
        method, reason = choose_method("auto", *vectors.shape)
        if method != index.method:
            return build_index(vectors, metric, "auto")
        index.build.reason = reason  # its counts are the references' now
    if isinstance(index, ApproximateIndex):
        index.build.recall = tune(index, k=(index.build.recall or {}).get("k", 10))
    return index


def check_method(method: str, dim: int | None = None, count: int | None = None) -> str:
    """Validate ``method=``: a named method, or a faiss factory string valid for ``dim``-d vectors.

    Without ``dim`` (not known yet) a factory string is only checked to be a
    non-empty string; :func:`build_index` checks it again at the real dimension,
    so ``"IVF256,PQ48"`` is accepted for 384-d vectors and refused for 512-d ones.
    With ``count``, the most vectors there can be, an index they cannot train (``"IVF99999,Flat"`` on 32
    photos) is refused too, before anything is embedded.
    """
    if isinstance(method, str) and method in METHODS and (method in ("auto", "brute_force") or dim is None):
        return method
    if isinstance(method, str) and method:
        if dim is None:
            return method
        import faiss

        try:
            index = faiss.index_factory(int(dim), factory_string(method, count or 1, int(dim)))
        except RuntimeError as exc:
            detail = str(exc).strip().rsplit(": ", 1)[-1]  # faiss prefixes its C++ location
            raise InvalidArgument(
                f"method must be one of {METHODS} or a faiss index factory string valid for {dim}-d vectors "
                f"(like 'IVF1024,Flat'), got {method!r}: {detail}"
            ) from None
        if count is not None:
            check_trainable(method, index, count)
        return method
    raise InvalidArgument(
        f"method must be one of {METHODS} or a faiss index factory string like 'IVF1024,Flat', got {method!r}"
    )
