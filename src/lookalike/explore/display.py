"""Notebook display: a model's summary as a table and query results as thumbnail grids.

Jupyter shows any object with a ``_repr_html_`` method as HTML. Thumbnails
are small JPEG data URIs made by the same helper as the evaluation report
(:func:`thumbnail_tag`), so a saved notebook holds its
pictures and links to no file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.errors import InvalidArgument
from lookalike.ingest.decode import ImageError, load_rgb
from lookalike.references.core import References, as_references

#: Longest side of a thumbnail in notebooks and the evaluation report, in pixels.
THUMBNAIL_PIXELS = 96

_STYLE = (
    "<style>.lk-grid td{vertical-align:top;padding:2px}.lk-grid figure{margin:0;width:104px;text-align:center}"
    ".lk-grid img{max-width:96px;max-height:96px;border:3px solid #ccc}.lk-grid .lk-query img{border-color:#27c}"
    ".lk-grid figcaption{font:11px sans-serif;overflow-wrap:anywhere}"
    ".lk-grid .missing{width:96px;height:64px;background:#eee;font:11px sans-serif}</style>"
)


def summary_html(summary: dict[str, Any]) -> str:
    """A compact two-column HTML table of ``model.summary(output="dict")`` (values escaped)."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in summary.items()
        if value is not None
    )
    return f"<table><caption>ImageSimilarityModel</caption>{rows}</table>"


class ResultGrid:
    """Query results as a grid: one row per query, its thumbnail then its neighbours', nearest first.

    Made by :meth:`lookalike.ImageSimilarityModel.show`; Jupyter renders it
    through ``_repr_html_``. ``html`` holds the same markup as a string.
    """

    def __init__(self, rows: list[tuple[tuple[str | None, str], list[tuple[str | None, str]]]]):
        self.rows = rows

    def _repr_html_(self) -> str:
        def figure(path: str | None, caption: str, css: str = "") -> str:
            tag = thumbnail_tag(path, caption)
            return f'<td><figure class="{css}">{tag}<figcaption>{html.escape(caption)}</figcaption></figure></td>'

        body = "".join(
            "<tr>" + figure(*query, css="lk-query") + "".join(figure(*n) for n in neighbours) + "</tr>"
            for query, neighbours in self.rows
        )
        return f'{_STYLE}<table class="lk-grid">{body}</table>'

    @property
    def html(self) -> str:
        return self._repr_html_()

    def __repr__(self) -> str:
        return f"<ResultGrid: {len(self.rows)} queries; shown as thumbnails in a notebook>"


def result_grid(
    references: References, results: pd.DataFrame, queries: Any = None, max_queries: int = 20
) -> ResultGrid:
    """A :class:`ResultGrid` of ``results`` (from ``model.query`` or ``model.similarity_graph(output_type="table")``).

    Parameters
    ----------
    references : lookalike.references.core.References
        The model's references (``model.core``); ``model.show`` calls this.
    results : pandas.DataFrame
        ``query_label, reference_label, distance, rank`` (a query) or
        ``__src_id, __dst_id, distance, rank`` (a similarity-graph table).
    queries : list of paths or DataFrame, optional
        What was passed to ``model.query``, to show the query images; without
        it a query is looked up among the references by label (as in a
        similarity graph), else shown as its label only.
    max_queries : int, default 20
        Rows shown (the first queries in ``results``).

    Examples
    --------
    >>> model.show(model.query(photos, k=5), queries=photos)  # doctest: +SKIP
    >>> model.show(model.similarity_graph(k=5, output_type="table"))  # doctest: +SKIP
    """
    references = as_references(references)
    paths = references.file_paths()
    labels = [str(label) for label in references.labels]
    if {"__src_id", "__dst_id"} <= set(results.columns):  # graph ids are the reference labels
        results = results.rename(columns={"__src_id": "query_label", "__dst_id": "reference_label"})
    missing = {"query_label", "reference_label", "distance"} - set(results.columns)
    if missing:
        raise InvalidArgument(
            f"results need the columns of model.query or similarity_graph tables; missing {sorted(missing)}"
        )
    position = {label: i for i, label in reversed(list(enumerate(labels)))}
    query_paths = _query_paths(references.feature_column, queries)
    rows = []
    for query, group in list(results.groupby("query_label", sort=False))[:max_queries]:
        if query_paths is not None:
            try:
                query_path = query_paths[int(query)]
            except (ValueError, IndexError):
                query_path = None
        else:
            query_path = paths[position[str(query)]] if str(query) in position else None
        neighbours = [
            (paths[position[str(ref)]] if str(ref) in position else None, f"{ref} · {distance:.3g}")
            for ref, distance in zip(group["reference_label"], group["distance"], strict=True)
        ]
        rows.append(((query_path, str(query)), neighbours))
    return ResultGrid(rows)


def _query_paths(feature_column: str | None, queries: Any) -> list[str] | None:
    """Paths of the query images by position (query labels are positions unless a label column was given)."""
    if queries is None:
        return None
    if isinstance(queries, str):
        return [queries]
    if isinstance(queries, pd.DataFrame):
        column = feature_column if feature_column in queries.columns else "path"
        return queries[column].tolist() if column in queries.columns else None
    return [str(q) for q in queries]


def thumbnail_tag(path: str | None, label: str) -> str:
    """An <img> holding a small JPEG as a data URI, or a grey box naming the image when it cannot be read."""
    if path is not None:
        try:
            image = load_rgb(path, min_size=(THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        except ImageError:
            pass
        else:
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
            data = base64.b64encode(buffer.getvalue()).decode("ascii")
            alt = html.escape(Path(path).name, quote=True)
            return f'<img src="data:image/jpeg;base64,{data}" alt="{alt}">'
    return f'<div class="missing">{html.escape(label)}</div>'
