"""Notebook HTML: the model summary table and thumbnail grids of real query results."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pandas as pd
from PIL import Image

import lookalike as lk
from lookalike.embed.registry import DEFAULT_MODEL

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "clothing"
ALL = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))


def _images(markup: str) -> list[Image.Image]:
    """Every inline JPEG in ``markup``, decoded."""
    found = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', markup)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def test_query_grid_shows_query_and_neighbour_thumbnails_with_distances(sample_model):
    queries = ALL[:3]
    results = sample_model.query(queries, k=4, verbose=False)
    markup = sample_model.show(results, queries=queries)._repr_html_()
    images = _images(markup)
    assert len(images) == 3 * (1 + 4)  # each query row: the query, then its 4 neighbours
    assert all(image.format == "JPEG" and max(image.size) <= 96 for image in images)
    assert markup.count("<tr>") == 3
    for distance in results["distance"]:
        assert f"{distance:.3g}" in markup
    # The query photo itself is its own nearest reference: same thumbnail bytes in both cells of row 1.
    row = markup.split("<tr>")[1]
    first, nearest = re.findall(r'src="(data:[^"]+)"', row)[:2]
    assert first == nearest


def test_graph_table_and_labels_are_escaped(tmp_path):
    photos = ALL[:6]
    names = ["<b>dress</b>", "a & b", "c", "d", "e", "f"]
    model = lk.create(pd.DataFrame({"image": photos, "name": names}), label="name", feature="image", verbose=False)
    markup = model.show(model.similarity_graph(k=2, output_type="table"), max_queries=4)._repr_html_()
    assert "<b>dress</b>" not in markup and "&lt;b&gt;dress&lt;/b&gt;" in markup and "a &amp; b" in markup
    assert markup.count("<tr>") == 4 and len(_images(markup)) == 4 * 3


def test_missing_image_shows_its_label(tmp_path, sample_model):
    results = sample_model.query(ALL[:1], k=2, verbose=False)
    markup = sample_model.show(results, queries=[str(tmp_path / "gone.jpg")])._repr_html_()
    assert len(_images(markup)) == 2 and 'class="missing">0<' in markup


def test_model_summary_html(sample_model):
    markup = sample_model._repr_html_()
    assert markup.startswith("<table>") and DEFAULT_MODEL in markup and "num_references" in markup
    assert str(len(sample_model.labels)) in markup
