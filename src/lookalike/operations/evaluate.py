"""Retrieval quality on labelled images: precision@k, recall@k, mAP and the UKBench N-S score.

Every reference is a query against all the references; its *relevant*
results are the other members of its group (itself excluded, leave-one-out).
Top-k hits come from the model's own index (what :meth:`query` returns), and
average precision from each query's full ranking, computed in blocks of
queries so that no n x n matrix is ever held.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lookalike.dedup import default_threshold
from lookalike.errors import InvalidArgument
from lookalike.explore.display import THUMBNAIL_PIXELS, thumbnail_tag
from lookalike.index.metrics import block_distances, exact_distances, row_norms
from lookalike.index.rows import drop_self
from lookalike.references.core import References
from lookalike.store.files import write_text_atomic

if TYPE_CHECKING:
    from lookalike.model import ImageSimilarityModel

__all__ = ["EvaluationReport", "PairReport", "evaluate_model", "score_judged_pairs"]

#: Distance cells (queries x references) ranked at once: 4M cells take under 100 MB with the sort's indices.
RANK_BLOCK_CELLS = 1 << 22
#: UKBench's N-S score is defined on groups of exactly this many images.
NS_GROUP_SIZE = 4


@dataclass
class EvaluationReport:
    """Retrieval quality of one model on one labelled set.

    Attributes
    ----------
    metrics : dict
        ``precision@k`` and ``recall@k`` for each k, ``mAP``, and ``N-S``
        (None unless every group has exactly 4 members).
    queries : pandas.DataFrame
        One row per reference, in reference order: ``label, path, group,
        relevant`` (other members of its group), ``average_precision``,
        ``first_relevant_rank`` and ``hits@k`` (group members among its top k
        other references). A reference alone in its group is no query: its
        ``average_precision`` and ``first_relevant_rank`` are missing.
    k : tuple of int
    metric : str
    model_name : str
        The embedding network, or ``"precomputed"``.
    num_groups : int
    failures : pandas.DataFrame
        Images that could not be embedded (``source, reason``); they take no part.
    seconds : float
        Time taken by the evaluation (embedding excluded).
    neighbours, distances : numpy.ndarray
        Each reference's nearest other references (positions) and their
        distances, ``max(k)`` of them: the results shown by :meth:`to_html`.
    descriptor : dict or None
        The model's descriptor options (see :class:`lookalike.embed.registry.Descriptor`).
    projection : str or None
        The kind of projection applied to the embeddings (``"whiten"``, ``"lda"``), if any.
    """

    metrics: dict[str, float | None]
    queries: pd.DataFrame
    k: tuple[int, ...]
    metric: str
    model_name: str
    num_groups: int
    failures: pd.DataFrame
    seconds: float
    neighbours: np.ndarray = field(repr=False)
    distances: np.ndarray = field(repr=False)
    descriptor: dict[str, Any] | None = None
    projection: str | None = None

    @property
    def num_references(self) -> int:
        return len(self.queries)

    @property
    def num_queries(self) -> int:
        """References that have at least one other member in their group."""
        return int((self.queries["relevant"] > 0).sum())

    def to_dict(self, queries: bool = True) -> dict[str, Any]:
        """The report as plain JSON-ready data; ``queries=False`` leaves out the per-query rows.

        Examples
        --------
        >>> report.to_dict(queries=False)["metrics"]["mAP"]  # doctest: +SKIP
        0.4123
        """
        out: dict[str, Any] = {
            "metrics": dict(self.metrics),
            "k": list(self.k),
            "metric": self.metric,
            "model": self.model_name,
            "descriptor": self.descriptor,
            "projection": self.projection,
            "num_references": self.num_references,
            "num_queries": self.num_queries,
            "num_groups": self.num_groups,
            "num_failures": int(len(self.failures)),
            "seconds": round(self.seconds, 3),
        }
        if queries:
            # pandas turns numpy scalars into JSON types and missing values into null.
            out["queries"] = json.loads(self.queries.to_json(orient="records"))
        return out

    def to_json(self, path: str | os.PathLike | None = None, queries: bool = True) -> str:
        """The report as JSON text, also written to ``path`` when given.

        Examples
        --------
        >>> report.to_json("quality.json", queries=False)  # doctest: +SKIP
        """
        text = json.dumps(self.to_dict(queries=queries), indent=2)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def worst(self, n: int = 20) -> pd.DataFrame:
        """The ``n`` queries with the lowest average precision (worst first)."""
        scored = self.queries.dropna(subset=["average_precision"])
        return scored.sort_values("average_precision", kind="stable").head(n)

    def _settings(self) -> str:
        """The model name with the non-plain parts of its descriptor and projection."""
        parts = [self.model_name]
        options = dict(self.descriptor or {})
        if options.get("pooling") == "gem":
            parts.append(f"GeM p={options.get('gem_p')}")
        parts += [name for name in ("flip", "normalize") if options.get(name)]
        if len(options.get("scales") or [1.0]) > 1:
            parts.append("scales " + "/".join(f"{s:g}" for s in options["scales"]))
        if self.projection:
            parts.append(self.projection)
        return " + ".join(parts)

    def to_text(self, worst: int = 5) -> str:
        """A readable summary: the metrics table, then the ``worst`` queries.

        Examples
        --------
        >>> print(report.to_text())  # doctest: +SKIP
        Retrieval quality: 80 references in 10 groups (80 queries), efficientnet_lite0, euclidean
        """
        lines = [
            f"Retrieval quality: {self.num_references} references in {self.num_groups} groups "
            f"({self.num_queries} queries), {self._settings()}, {self.metric}",
            "",
            f"{'metric':<14}{'value':>8}",
        ]
        for name, value in self.metrics.items():
            shown = f"{value:8.4f}" if value is not None else f"{'-':>8}  (needs groups of exactly 4)"
            lines.append(f"{name:<14}{shown}")
        if len(self.failures):
            lines += ["", f"{len(self.failures)} images could not be read and took no part (see .failures)"]
        rows = self.worst(worst)
        if len(rows):
            lines += ["", f"Worst {len(rows)} queries (lowest average precision):"]
            lines += [
                f"  AP {row.average_precision:.3f}  first group member at rank {row.first_relevant_rank:<5} "
                f"group {row.group}  {row.path if row.path is not None else row.label}"
                for row in rows.itertuples()
            ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def to_html(self, path: str | os.PathLike, worst: int = 20) -> Path:
        """Write a self-contained HTML page: the metrics and the ``worst`` queries with their top results.

        Each query is shown beside its ``max(k)`` nearest other references as
        small embedded JPEG thumbnails (no external files or links, so the page
        works offline and can be mailed): a green border marks a member of the
        query's group, a red one any other image; captions give rank and distance.

        Examples
        --------
        >>> report.to_html("report.html", worst=10)  # doctest: +SKIP
        PosixPath('report.html')
        """
        thumbnails: dict[int, str] = {}
        paths = self.queries["path"].tolist()
        groups = self.queries["group"].tolist()

        def figure(position: int, css: str, caption: str) -> str:
            if position not in thumbnails:
                thumbnails[position] = thumbnail_tag(paths[position], str(self.queries["label"].iloc[position]))
            return f'<figure class="{css}">{thumbnails[position]}<figcaption>{caption}</figcaption></figure>'

        sections = []
        for number, row in enumerate(self.worst(worst).itertuples(), start=1):
            position = int(row.Index)
            cells = [figure(position, "query", f"query<br>{html.escape(str(row.group))}")]
            for rank, (other, distance) in enumerate(
                zip(self.neighbours[position], self.distances[position], strict=True), start=1
            ):
                same = groups[int(other)] == row.group
                cells.append(
                    figure(
                        int(other),
                        "same" if same else "other",
                        f"{rank} &middot; {distance:.4g}<br>{html.escape(str(groups[int(other)]))}",
                    )
                )
            name = html.escape(str(row.path if row.path is not None else row.label))
            sections.append(
                f"<section><h3>{number}. AP {row.average_precision:.3f} &middot; first group member at rank "
                f"{row.first_relevant_rank} &middot; {name}</h3><div class=row>{''.join(cells)}</div></section>"
            )
        metrics_rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{'-' if value is None else f'{value:.4f}'}</td></tr>"
            for name, value in self.metrics.items()
        )
        title = (
            f"{self.num_references} references in {self.num_groups} groups ({self.num_queries} queries), "
            f"model {self._settings()}, metric {self.metric}"
        )
        page = _HTML_PAGE.format(
            title=html.escape(title),
            metrics=metrics_rows,
            count=len(sections),
            sections="\n".join(sections) or "<p>No queries.</p>",
            size=THUMBNAIL_PIXELS,
        )
        path = Path(path)
        write_text_atomic(path, page)
        return path


_HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lookalike retrieval report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} td {{ padding: 2px 12px; border-bottom: 1px solid #ddd; }}
td:last-child {{ text-align: right; font-variant-numeric: tabular-nums; }}
h3 {{ font-size: 0.95em; font-weight: 600; margin: 1.2em 0 0.3em; word-break: break-all; }}
.row {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure {{ margin: 0; width: {size}px; font-size: 0.75em; text-align: center; }}
figure img, figure .missing {{ width: {size}px; height: {size}px; object-fit: contain; background: #f4f4f4;
  box-sizing: border-box; border: 4px solid #888; display: block; }}
.missing {{ display: flex; align-items: center; justify-content: center; overflow: hidden; }}
.query img, .query .missing {{ border-color: #36c; }}
.same img, .same .missing {{ border-color: #2a2; }}
.other img, .other .missing {{ border-color: #d22; }}
</style></head><body>
<h1>Retrieval quality</h1>
<p>{title}</p>
<table>{metrics}</table>
<h2>The {count} worst queries (lowest average precision)</h2>
<p>Blue: the query. Green: a member of its group. Red: another image. Caption: rank &middot; distance, group.</p>
{sections}
</body></html>
"""


def _check_ks(k: int | Iterable[int]) -> tuple[int, ...]:
    values = list(k) if isinstance(k, Iterable) else [k]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise InvalidArgument(f"k must be a positive integer or a sequence of them, got {k!r}")
    return tuple(sorted({int(v) for v in values}))


def _average_precisions(
    model: ImageSimilarityModel,
    codes: np.ndarray,
    relevant: np.ndarray,
    verbose: bool,
    shortlists: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact average precision and rank of the first relevant result of each query (NaN without relevant items).

    Each block of queries is measured against every reference with the
    index's own block distances and ranked by (distance, position), the order
    :meth:`ImageSimilarityModel.query` uses, with the query itself left out.
    A relevant item at rank r that is the m-th relevant one contributes m / r.
    ``shortlists`` (re-ranked by verification) come first in their own order.
    """
    vectors = model.embeddings
    n = len(vectors)
    norms = row_norms(vectors)
    ap = np.full(n, np.nan)
    first = np.full(n, np.nan)
    block = max(1, RANK_BLOCK_CELLS // n)
    for q0 in tqdm(range(0, n, block), desc="Ranking", unit="block", disable=None if verbose else True, leave=False):
        rows = np.arange(q0, min(n, q0 + block))
        distances = block_distances(model.metric, vectors[rows], norms[rows], vectors, norms)
        distances[np.arange(len(rows)), rows] = np.inf  # the query itself goes last, out of the ranking
        order = np.argsort(distances, axis=1, kind="stable")  # stable: ties in reference order
        if shortlists is not None:
            for i, row in enumerate(rows):
                front = shortlists[row][shortlists[row] != row]
                order[i] = np.concatenate([front, order[i][~np.isin(order[i], front)]])
        is_relevant = codes[order] == codes[rows, None]
        is_relevant[order == rows[:, None]] = False
        row, column = np.nonzero(is_relevant)  # row-major: each query's relevant items, nearest first
        counts = np.bincount(row, minlength=len(rows))
        starts = np.cumsum(counts) - counts
        nth = np.arange(len(row)) - starts[row] + 1
        precision_sums = np.bincount(row, weights=nth / (column + 1), minlength=len(rows))
        has = counts > 0
        ap[rows[has]] = precision_sums[has] / relevant[rows[has]]
        first[rows[has]] = column[starts[has]] + 1
    return ap, first


def evaluate_model(
    similarity_model: ImageSimilarityModel,
    groups: Sequence[Any] | np.ndarray,
    k: int | Iterable[int] = (1, 4, 10),
    verbose: bool = True,
    verify: Any = False,
    shortlist: int = 20,
) -> EvaluationReport:
    """Measure how well a built model retrieves each reference's group mates.

    Every reference is a query against all the references. Leave-one-out
    metrics (the query itself is not a result): ``precision@k`` (group mates
    among the top k, over k), ``recall@k`` (over the number of group mates),
    and ``mAP`` (mean average precision of each query's full ranking). A
    reference alone in its group has no group mates and is not a query. When
    every group has exactly 4 members, ``N-S`` is the UKBench score: the mean
    number of group members among each query's top 4 results *itself
    included* (4.0 is perfect).

    Parameters
    ----------
    similarity_model : ImageSimilarityModel
        A model from :func:`lookalike.create` or :func:`lookalike.load_model`,
        for instance one built from precomputed embeddings (``model=None``).
    groups : sequence
        The group (class, near-duplicate set) of each reference, aligned with
        ``similarity_model.labels``.
    k : int or sequence of int, default (1, 4, 10)
        Cut-offs for precision and recall.
    verbose : bool, default True
        Show a progress bar while ranking.
    verify : bool or lookalike.operations.verify.Verifier, default False
        Re-rank each reference's ``shortlist`` nearest references by
        geometric verification, as ``query(verify=...)`` does (needs the
        reference files); the metrics then
        measure the re-ranked results.
    shortlist : int, default 20
        With ``verify``: the nearest references verified per query.

    Returns
    -------
    EvaluationReport

    Examples
    --------
    >>> import numpy as np, lookalike as lk
    >>> points = np.array([[0, 0], [1, 0], [10, 0], [11, 0]], dtype=np.float32)
    >>> model = lk.create(points, model=None, verbose=False)
    >>> report = lk.evaluate_model(model, ["a", "a", "b", "b"], k=1, verbose=False)
    >>> report.metrics["precision@1"], report.metrics["mAP"], report.metrics["N-S"]  # N-S needs groups of 4
    (1.0, 1.0, None)
    """
    started = time.perf_counter()
    ks = _check_ks(k)
    groups = np.asarray(groups)
    n = len(similarity_model.labels)
    if groups.ndim != 1 or len(groups) != n:
        raise InvalidArgument(
            f"groups must give one group per reference: expected {n} values, got shape {groups.shape}"
        )
    if pd.isna(groups).any():
        raise InvalidArgument("groups has missing values: every reference needs a group")
    codes, names = pd.factorize(groups)
    sizes = np.bincount(codes)
    relevant = sizes[codes] - 1
    queries = relevant > 0
    if not queries.any():
        raise InvalidArgument("every group has a single member: nothing can be retrieved, there is nothing to measure")

    # The model's own search, self included (ranked first unless an identical image precedes it).
    width = max(ks[-1] + 1, NS_GROUP_SIZE)
    shortlists = None
    if verify:  # each reference's shortlist re-ranked as query(verify=) does (lookalike.operations.verify)
        from lookalike.operations.verify import reference_paths, verify_query

        width = max(width, shortlist)
        paths = reference_paths(similarity_model.core)
        distances, neighbours, _ = verify_query(
            similarity_model.core, similarity_model.embeddings, paths, width, verify, shortlist, verbose
        )
        shortlists = neighbours
    else:
        distances, neighbours = similarity_model.core.search(similarity_model.embeddings, width)
    same = codes[neighbours] == codes[:, None]
    ns = float(same[:, :NS_GROUP_SIZE].sum(axis=1).mean()) if (sizes == NS_GROUP_SIZE).all() else None
    distances, neighbours = drop_self(distances, neighbours)
    distances, neighbours = distances[:, : ks[-1]], neighbours[:, : ks[-1]]
    hits = {kk: (codes[neighbours[:, :kk]] == codes[:, None]).sum(axis=1) for kk in ks}

    ap, first = _average_precisions(similarity_model, codes, relevant, verbose, shortlists)
    metrics: dict[str, float | None] = {}
    for kk in ks:
        metrics[f"precision@{kk}"] = float((hits[kk][queries] / kk).mean())
        metrics[f"recall@{kk}"] = float((hits[kk][queries] / relevant[queries]).mean())
    metrics["mAP"] = float(ap[queries].mean())
    metrics["N-S"] = ns

    table = pd.DataFrame(
        {
            "label": similarity_model.labels,
            "path": similarity_model.core.file_paths(),
            "group": groups,
            "relevant": relevant,
            "average_precision": ap,
            "first_relevant_rank": pd.Series(first).astype("Int64"),
        }
    )
    for kk in ks:
        table[f"hits@{kk}"] = hits[kk]
    return EvaluationReport(
        metrics=metrics,
        queries=table,
        k=ks,
        metric=similarity_model.metric,
        model_name=similarity_model.model_name or "precomputed",
        num_groups=len(names),
        failures=similarity_model.failures,
        seconds=time.perf_counter() - started,
        neighbours=neighbours,
        distances=distances,
        descriptor=(similarity_model.embedding_model or {}).get("descriptor"),
        projection=similarity_model.projection.kind if similarity_model.projection is not None else None,
    )


@dataclass
class PairReport:
    """How well a network's distances separate pairs a person judged duplicates from pairs judged distinct.

    Attributes
    ----------
    metrics : dict
        ``pairs``, ``duplicates``, ``distinct``; ``average_precision`` of the
        duplicate pairs ranked by distance (1.0: every duplicate pair is closer
        than every distinct one); at ``threshold`` (the network's measured
        dedup default unless given): ``precision`` and ``recall`` of the
        pairs it links; ``best_threshold`` and ``best_f1`` over all thresholds.
    pairs : pandas.DataFrame
        ``a, b, duplicate, distance``, one row per pair whose images could be read.
    """

    metrics: dict[str, Any]
    pairs: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "pairs": self.pairs.to_dict(orient="records")}

    def __str__(self) -> str:
        m = self.metrics
        lines = [f"{m['pairs']} judged pairs: {m['duplicates']} duplicates, {m['distinct']} distinct"]
        lines.append(f"average precision of the duplicates ranked by distance: {_shown_value(m['average_precision'])}")
        if m["threshold"] is not None:
            lines.append(
                f"at threshold {m['threshold']:g}: precision {_shown_value(m['precision'])}, "
                f"recall {_shown_value(m['recall'])}"
            )
        if m["best_threshold"] is not None:
            lines.append(f"best F1 {m['best_f1']:.3f} at threshold {m['best_threshold']:.4g}")
        return "\n".join(lines)


def _shown_value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def score_judged_pairs(
    references: References, table: pd.DataFrame, first: pd.Series, judged: np.ndarray, threshold: float | None
) -> PairReport:
    """:func:`lookalike.evaluate_pairs` once the judged files are embedded in ``references`` (their ``path``
    column): each pair's distance, and how well the distances separate duplicates from distinct pairs."""
    files = pd.Index(pd.concat([first, table["b"]]).astype(str).unique())
    where = pd.Index(references.table["path"].astype(str)).get_indexer(files)
    position = pd.Series(where, index=files)
    a, b = position[first.astype(str)].to_numpy(), position[table["b"].astype(str)].to_numpy()
    readable = (a >= 0) & (b >= 0)
    vectors = references.embeddings
    distances = exact_distances(references.metric, vectors[a[readable]], vectors[b[readable]][:, None, :])[:, 0]
    judged = judged[readable]
    if threshold is None:
        try:
            threshold = default_threshold(references)
        except InvalidArgument:
            threshold = None
    metrics = _pair_metrics(distances, judged, threshold)
    scored = pd.DataFrame(
        {"a": table["a"][readable].to_numpy(), "b": table["b"][readable].to_numpy(), "duplicate": judged}
    )
    scored["distance"] = distances
    return PairReport(metrics, scored)


def _pair_metrics(distances: np.ndarray, duplicate: np.ndarray, threshold: float | None) -> dict[str, Any]:
    order = np.argsort(distances, kind="stable")
    hits = duplicate[order]
    found = np.cumsum(hits)
    linked = np.arange(1, len(hits) + 1)
    total = int(duplicate.sum())
    metrics: dict[str, Any] = {
        "pairs": int(len(duplicate)),
        "duplicates": total,
        "distinct": int(len(duplicate) - total),
        "average_precision": float(np.mean((found / linked)[hits])) if total else None,
        "threshold": threshold,
        "precision": None,
        "recall": None,
        "best_threshold": None,
        "best_f1": None,
    }
    if threshold is not None and len(distances):
        at = distances <= threshold
        metrics["precision"] = float(duplicate[at].mean()) if at.any() else None
        metrics["recall"] = float(duplicate[at].sum() / total) if total else None
    if total:
        f1 = 2 * found / (linked + total)
        best = int(np.argmax(f1))
        metrics["best_threshold"], metrics["best_f1"] = float(distances[order][best]), float(f1[best])
    return metrics
