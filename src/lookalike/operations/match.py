"""Set-to-set matching: which images of set A look like which images of set B.

Seed 004 computed a dense cosine matrix between two sets (13,501 x 21,221)
and kept the pairs above a similarity. Here both sets are embedded (or
taken from saved models), and pairs are found in blocks: at most one
block of distances exists at a time, whatever the sizes of A and B: pairs
within a threshold come from the one range search
(:func:`lookalike.index.exact.pairs_within`), k nearest from B's index, and
every distance is re-measured from the two rows, so a pair's distance is the
same as ``query`` reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.dedup import default_threshold
from lookalike.embed.extractor import BATCH_SIZE
from lookalike.embed.registry import DEFAULT_MODEL, ModelSpec
from lookalike.errors import InvalidArgument
from lookalike.index import check_metric
from lookalike.index.exact import pairs_within
from lookalike.index.metrics import DEFAULT_METRIC
from lookalike.model import ImageSimilarityModel, create, load_model
from lookalike.store import storage
from lookalike.store.results import check_output, label_type, write_blocks
from lookalike.validation import check_distance, check_positive_int

__all__ = ["match"]

#: Rows of A queried at a time.
BLOCK_A = 4096


def match(
    a: Any,
    b: Any,
    threshold: float | None = None,
    k: int | None = None,
    metric: str | None = None,
    model: str | os.PathLike | ModelSpec | None = "auto",
    label_a: str | None = None,
    label_b: str | None = None,
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    path: str | os.PathLike | None = None,
    one_to_one: bool = False,
) -> pd.DataFrame | Path:
    """Pairs (a, b) of images from two sets that look alike: all pairs within ``threshold`` and/or b's ``k`` nearest per a.

    With neither ``threshold`` nor ``k``, pairs within the threshold measured for
    the network, descriptor and metric (dedup's default, see
    :func:`lookalike.dedup.default_threshold`).

    Parameters
    ----------
    a, b : folder, glob, list of paths, table file, pandas.DataFrame, 2-D array, saved model path, or ImageSimilarityModel
        The two sets: anything :func:`lookalike.create` accepts (a 2-D numpy
        array is taken as embeddings), a model directory saved with
        ``model.save``, or a model object. Image sets are embedded with the
        embedding cache, so matching the same folder again is fast.
    threshold : float, optional
        Largest distance of a pair, in ``metric`` (all metrics are distances:
        smaller is closer; ``dot``'s is minus the dot product). Seed 004's
        cosine *similarity* 0.845 is ``threshold=0.155`` with ``metric="cosine"``.
        Default, without ``k``: the measured one (a clear error where none was).
    k : int, optional
        Keep at most the ``k`` nearest b images of each a image. With
        ``threshold`` too, both conditions hold.
    metric : {"euclidean", "cosine", "dot"}, optional
        Used for both sets. Default: the metric of the model given as ``a``
        (or else ``b``), so that a pair's distance is the one ``query`` and
        ``dedup`` show on that model; for sets built here, ``"euclidean"``,
        as ``create`` and ``lookalike index``.
    model : str, path, ModelSpec or None, default "auto"
        Network that embeds the image sets: ``"auto"`` takes the one a model
        input was built with, else ``"efficientnet_lite0"``; None means the
        inputs are precomputed embeddings.
    label_a, label_b : str, optional
        Column naming the images of a DataFrame/table input (as ``create``'s
        ``label``); row numbers when None.
    batch_size : int, default 16
    verbose : bool, default True
        Progress bars while embedding.
    path : str or path, optional
        A ``.parquet`` or ``.csv`` file to stream the pairs to, one block of
        A at a time, instead of returning them: the pairs are never all in
        memory, and the file appears only when complete.
    one_to_one : bool, default False
        Each image in at most one pair (an edit to its original, a product
        photo to its catalogue entry): of the candidate pairs (within
        ``threshold``, among the ``k`` nearest), the closest pair is taken
        first, then the closest of those left whose images are both still
        free, and so on; every taken pair is the nearest free choice for
        both of its images (mutual nearest neighbours, applied in turn). The
        images left without a pair follow as rows with no partner
        (``b_label`` or ``a_label`` missing, ``distance`` NaN).

    Returns
    -------
    pandas.DataFrame or pathlib.Path
        ``a_label, b_label, distance`` (float64), ordered by a, then distance,
        then b; plus ``a_path, b_path`` when the sets are image files; its
        ``attrs["metric"]`` names the metric. With ``path``, that table is in
        the file, each row also naming its ``metric``, and its path is returned.

    Raises
    ------
    ValueError
        Neither ``threshold`` nor ``k`` where no threshold was measured; a bad
        value; sets embedded by different networks or of different dimensions.

    Examples
    --------
    >>> import lookalike as lk
    >>> pairs = lk.match("shop_photos/", "catalogue/", threshold=0.15, verbose=False)  # doctest: +SKIP
    >>> pairs.columns.tolist()  # doctest: +SKIP
    ['a_label', 'b_label', 'distance', 'a_path', 'b_path']
    """
    metric = _metric_of(a, b, metric)
    threshold, k = _check_limits(threshold, k, metric)
    if path is not None:
        path = check_output(path)  # before any embedding
    model_a, model_b = _as_models(a, b, model, metric, (label_a, label_b), batch_size, verbose)
    _check_comparable(model_a, model_b)
    if threshold is None and k is None:
        threshold = _default_threshold(model_a, metric)
    candidates = _candidate_blocks(model_a, model_b, threshold, k, metric, BLOCK_A)
    if one_to_one:
        blocks = iter([_one_to_one_table(model_a, model_b, _concat(candidates))])
    else:
        blocks = (_pair_table(model_a, model_b, *block) for block in candidates)
    if path is not None:
        write_blocks(path, blocks, _pair_schema(model_a, model_b), metric=metric)
        return path
    pairs = pd.concat(blocks, ignore_index=True)
    pairs.attrs["metric"] = metric  # what the distances mean, for whoever shows or writes them
    return pairs


def _candidate_blocks(
    model_a: ImageSimilarityModel,
    model_b: ImageSimilarityModel,
    threshold: float | None,
    k: int | None,
    metric: str,
    block_a: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(a positions, b positions, distances)``, one block of A at a time, in the final order (a, distance, b)."""
    if k is not None:
        # b's own index (approximate or exact) when it measures the same metric; exact search otherwise.
        index = model_b.core.index if model_b.metric == metric else model_b.core.exact_index(metric)
    for a0 in range(0, len(model_a.labels), block_a):
        queries = model_a.embeddings[a0 : a0 + block_a]
        if k is not None:
            distances, positions = index.search(queries, k)
            a_pos = np.repeat(np.arange(a0, a0 + len(positions)), positions.shape[1])
            b_pos, dist = positions.ravel(), distances.ravel()
            if threshold is not None:
                close = dist <= threshold
                a_pos, b_pos, dist = a_pos[close], b_pos[close], dist[close]
        else:
            a_pos, b_pos, dist = _concat(pairs_within(queries, model_b.embeddings, metric, threshold, block_a))
            order = np.lexsort((b_pos, dist, a_pos))
            a_pos, b_pos, dist = a_pos[order] + a0, b_pos[order], dist[order]
        yield a_pos, b_pos, dist


def _one_to_one_table(
    model_a: ImageSimilarityModel, model_b: ImageSimilarityModel, candidates: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> pd.DataFrame:
    """Closest pair first, each image in one pair at most; then the unmatched of a, then of b."""
    a_pos, b_pos, dist = candidates
    order = np.lexsort((b_pos, a_pos, dist))
    a_free = np.ones(len(model_a.labels), bool)
    b_free = np.ones(len(model_b.labels), bool)
    taken = []
    for i in order.tolist():
        if a_free[a_pos[i]] and b_free[b_pos[i]]:
            a_free[a_pos[i]] = b_free[b_pos[i]] = False
            taken.append(i)
    taken = np.array(sorted(taken, key=lambda i: (a_pos[i], dist[i])), np.int64)
    pairs = _pair_table(model_a, model_b, a_pos[taken], b_pos[taken], dist[taken])
    alone_a = _pair_table(model_a, model_b, np.flatnonzero(a_free), None, None)
    alone_b = _pair_table(model_a, model_b, None, np.flatnonzero(b_free), None)
    return pd.concat([pairs, alone_a, alone_b], ignore_index=True)


def _pair_table(
    model_a: ImageSimilarityModel,
    model_b: ImageSimilarityModel,
    a_pos: np.ndarray | None,
    b_pos: np.ndarray | None,
    dist: np.ndarray | None,
) -> pd.DataFrame:
    """Pairs at these positions; with one side None, that side's images without a partner (distance NaN)."""
    rows = len(a_pos if a_pos is not None else b_pos)

    def side(values: np.ndarray, pos: np.ndarray | None) -> Any:
        return values[pos] if pos is not None else pd.array([None] * rows, dtype=object)

    table = pd.DataFrame(
        {
            "a_label": side(model_a.labels, a_pos),
            "b_label": side(model_b.labels, b_pos),
            "distance": dist if dist is not None else np.full(rows, np.nan),
        }
    )
    for name, m, pos in (("a_path", model_a, a_pos), ("b_path", model_b, b_pos)):
        if _has_paths(m):
            paths = m.references[m.feature]
            table[name] = paths.take(pos).reset_index(drop=True) if pos is not None else side(paths.to_numpy(), None)
    return table


def _has_paths(model: ImageSimilarityModel) -> bool:
    return model.feature in model.references.columns


def _pair_schema(model_a: ImageSimilarityModel, model_b: ImageSimilarityModel) -> pa.Schema:
    """The arrow schema of a streamed pairs file (every block has the same columns and types)."""
    fields = [
        ("a_label", label_type(model_a.labels)),
        ("b_label", label_type(model_b.labels)),
        ("distance", pa.float64()),
    ]
    fields += [(name, pa.string()) for name, m in (("a_path", model_a), ("b_path", model_b)) if _has_paths(m)]
    return pa.schema(fields)


def _concat(parts: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_pos, b_pos, dist = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float64)]
    for i, j, d in parts:
        a_pos.append(i)
        b_pos.append(j)
        dist.append(d)
    return np.concatenate(a_pos), np.concatenate(b_pos), np.concatenate(dist)


def _metric_of(a: Any, b: Any, metric: str | None) -> str:
    """The metric asked for; else a saved model's (a's first, then b's); else create's default."""
    if metric is not None:
        return check_metric(metric)
    for source in (a, b):
        if isinstance(source, ImageSimilarityModel):
            return source.metric
        if _is_saved_model(source):
            return check_metric(storage.read_manifest(source).get("metric"))
    return DEFAULT_METRIC


def _default_threshold(model_a: ImageSimilarityModel, metric: str) -> float:
    """The threshold measured for set a's network, descriptor and ``metric`` (dedup's), or a clear error."""
    try:
        if model_a.metric != metric:
            raise InvalidArgument(f"the thresholds were measured in each model's own metric, not {metric}")
        return default_threshold(model_a.core)
    except InvalidArgument as exc:
        raise InvalidArgument(
            "match needs threshold= (the largest distance of a pair) and/or k= (nearest b images per a): "
            f"no default was measured here ({exc})"
        ) from None


def _check_limits(threshold: Any, k: Any, metric: str) -> tuple[float | None, int | None]:
    if threshold is not None:
        threshold = check_distance("threshold", threshold, metric)
    return threshold, check_positive_int("k", k, none=True)


def _is_saved_model(source: Any) -> bool:
    return isinstance(source, str | os.PathLike) and storage.is_model_dir(Path(source))


def _as_models(
    a: Any, b: Any, network: Any, metric: str, labels: tuple[str | None, str | None], batch_size: int, verbose: bool
) -> tuple[ImageSimilarityModel, ImageSimilarityModel]:
    """Each input as a model: given, loaded from disk, or created (embedded with the same network)."""
    built: dict[str, ImageSimilarityModel] = {}
    for name, source in (("a", a), ("b", b)):
        if isinstance(source, ImageSimilarityModel):
            built[name] = source
        elif _is_saved_model(source):
            built[name] = load_model(source)
    if isinstance(network, str) and network == "auto":
        specs = [m.core.spec for m in built.values() if m.embedding_model is not None]
        network = specs[0] if specs else DEFAULT_MODEL
    for (name, source), label in zip((("a", a), ("b", b)), labels, strict=True):
        if name not in built:
            embeddings = isinstance(source, np.ndarray) and source.ndim == 2
            try:
                built[name] = create(
                    source,
                    label=label,
                    model=None if embeddings else network,
                    metric=metric,
                    batch_size=batch_size,
                    verbose=verbose,
                )
            except ValueError as exc:
                raise InvalidArgument(f"set {name}: {exc}") from exc
    return built["a"], built["b"]


def _check_comparable(a: ImageSimilarityModel, b: ImageSimilarityModel) -> None:
    """Distances between two sets mean something only when one network embedded both."""
    if a.dim != b.dim:
        raise InvalidArgument(
            f"set a has {a.dim}-d embeddings ({a.model_name or 'precomputed'}) and set b {b.dim}-d "
            f"({b.model_name or 'precomputed'}): they cannot be compared"
        )
    ra, rb = a.embedding_model, b.embedding_model
    if ra is not None and rb is not None and ra.get("fingerprint") != rb.get("fingerprint"):
        raise InvalidArgument(
            f"set a was embedded by {ra['name']!r} (fingerprint {ra.get('fingerprint')}) and set b by "
            f"{rb['name']!r} (fingerprint {rb.get('fingerprint')}): distances between them mean nothing; "
            "embed both with the same network"
        )
