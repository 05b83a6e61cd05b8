"""Retrieval-quality evaluation: metrics worked out by hand, a brute-force cross-check, real photos, reports."""

from __future__ import annotations

import base64
import importlib
import io
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lookalike as lk
from conftest import CLASSES, SAMPLES
from lookalike.embed.registry import DEFAULT_MODEL

# ``lookalike.operations.evaluate`` is the function (exported by the package); the module is reached through importlib.
evaluation = importlib.import_module("lookalike.operations.evaluate")

# Eight points on a line (2-D embeddings with y = 0), two groups of four:
#   position:  0   1   2   3   4   5   6   7
#   group:     a   a   a   a   b   b   b   b
#   x:         0   1   3   9   7  10  12  16
# Each query's distances to the others are all different, so every ranking is unambiguous.
LINE_X = [0, 1, 3, 9, 7, 10, 12, 16]
LINE_GROUPS = list("aaaabbbb")
# Rankings (others, nearest first), R = relevant (same group), . = other group:
#   a0 (x=0):  a1 1, a2 3, b0 7, a3 9, b1 10, ...    R R . R      -> relevant at ranks 1, 2, 4
#   a1 (x=1):  a0 1, a2 2, b0 6, a3 8, ...           R R . R      -> 1, 2, 4
#   a2 (x=3):  a1 2, a0 3, b0 4, a3 6, ...           R R . R      -> 1, 2, 4
#   a3 (x=9):  b1 1, b0 2, b2 3, a2 6, b3 7, a1 8, a0 9           -> 4, 6, 7
#   b0 (x=7):  a3 2, b1 3, a2 4, b2 5, a1 6, a0 7, b3 9           -> 2, 4, 7
#   b1 (x=10): a3 1, b2 2, b0 3, b3 6, ...                        -> 2, 3, 4
#   b2 (x=12): b1 2, a3 3, b3 4, b0 5, ...                        -> 1, 3, 4
#   b3 (x=16): b2 4, b1 6, a3 7, b0 9, ...                        -> 1, 2, 4
# AP = mean over the 3 relevant items of (m / rank of the m-th one):
#   ranks 1,2,4: (1 + 1 + 3/4) / 3 = 11/12          ranks 4,6,7: (1/4 + 2/6 + 3/7) / 3 = 85/252
#   ranks 2,4,7: (1/2 + 2/4 + 3/7) / 3 = 10/21      ranks 2,3,4: (1/2 + 2/3 + 3/4) / 3 = 23/36
#   ranks 1,3,4: (1 + 2/3 + 3/4) / 3 = 29/36
LINE_AP = [Fraction(11, 12)] * 3 + [Fraction(85, 252), Fraction(10, 21), Fraction(23, 36), Fraction(29, 36)]
LINE_AP += [Fraction(11, 12)]
# Group mates among the top 1 / top 4 (leave-one-out) and, for N-S, among the top 4 with the query itself
# (always first here) included: that is 1 + the mates among the top 3 others.
LINE_HITS_1 = [1, 1, 1, 0, 0, 0, 1, 1]  # 5 of 8
LINE_HITS_4 = [3, 3, 3, 1, 2, 3, 3, 3]  # 21
LINE_NS = [3, 3, 3, 1, 2, 3, 3, 3]  # a3: itself only; b0: itself + b1


def line_model(metric: str = "euclidean") -> lk.ImageSimilarityModel:
    points = np.array([[x, 0] for x in LINE_X], dtype=np.float32)
    return lk.create(points, model=None, metric=metric, verbose=False)


def test_metrics_worked_out_by_hand():
    report = lk.evaluate_model(line_model(), LINE_GROUPS, k=(1, 4, 10), verbose=False)
    m = report.metrics
    assert m["precision@1"] == 5 / 8
    assert m["recall@1"] == pytest.approx(5 / 24, rel=1e-12)  # 3 group mates each
    assert m["precision@4"] == 21 / 32
    assert m["recall@4"] == pytest.approx(21 / 24, rel=1e-12)
    # Only 7 others exist: all 3 mates are in every top 10, and precision@k still divides by k.
    assert m["precision@10"] == pytest.approx(3 / 10, rel=1e-12)
    assert m["recall@10"] == 1.0
    assert m["mAP"] == pytest.approx(float(sum(LINE_AP) / 8), rel=1e-12)
    assert m["N-S"] == 21 / 8
    assert report.queries["average_precision"].tolist() == pytest.approx([float(a) for a in LINE_AP], rel=1e-12)
    assert report.queries["hits@1"].tolist() == LINE_HITS_1
    assert report.queries["hits@4"].tolist() == LINE_HITS_4
    assert report.queries["first_relevant_rank"].tolist() == [1, 1, 1, 4, 2, 2, 1, 1]
    assert report.queries["relevant"].tolist() == [3] * 8
    assert report.num_groups == 2 and report.num_queries == 8 and report.num_references == 8
    assert report.k == (1, 4, 10) and report.metric == "euclidean" and report.model_name == "precomputed"


def test_worst_queries_are_the_lowest_average_precision():
    report = lk.evaluate_model(line_model(), LINE_GROUPS, k=4, verbose=False)
    assert report.worst(3).index.tolist() == [3, 4, 5]  # APs 85/252 < 10/21 < 23/36
    text = report.to_text(worst=2)
    assert "mAP" in text and "0.7406" in text and "N-S" in text and "2.6250" in text
    assert str(report) == report.to_text()


def test_ns_needs_every_group_to_have_exactly_four_members():
    groups = list("aaabbbbb")  # same points, groups of 3 and 5
    report = lk.evaluate_model(line_model(), groups, k=4, verbose=False)
    assert report.metrics["N-S"] is None
    assert report.queries["relevant"].tolist() == [2, 2, 2, 4, 4, 4, 4, 4]
    assert "needs groups of exactly 4" in report.to_text()


def test_a_reference_alone_in_its_group_is_not_a_query():
    groups = ["a", "a", "a", "solo", "b", "b", "b", "b"]  # a3 (x=9) alone
    report = lk.evaluate_model(line_model(), groups, k=1, verbose=False)
    solo = report.queries.iloc[3]
    assert solo["relevant"] == 0 and np.isnan(solo["average_precision"]) and pd.isna(solo["first_relevant_rank"])
    assert report.num_queries == 7
    # a0: a1 1, a2 3, b0 7 -> ranks 1, 2: AP 1; likewise a1 and a2. b0 (x=7): solo 2, b1 3, a2 4, b2 5, ..., b3 9
    # -> b1 2, b2 4, b3 7 as before.
    assert report.queries["average_precision"].iloc[4] == pytest.approx(10 / 21, rel=1e-12)
    assert report.metrics["mAP"] == pytest.approx(report.queries["average_precision"].drop(index=3).mean())
    assert report.metrics["precision@1"] == pytest.approx(report.queries["hits@1"].drop(index=3).mean())


def test_ties_are_ranked_as_query_ranks_them():
    # The query (x=0, group a) is exactly as far from its mate (x=1) as from an outsider (x=-1):
    # query() puts the lower reference position first, and so must the evaluation.
    for outsider_first in (True, False):
        xs = [-1, 0, 1, 5] if outsider_first else [1, 0, -1, 5]
        groups = ["b", "a", "a", "b"] if outsider_first else ["a", "a", "b", "b"]
        model = lk.create(np.array([[x, 0] for x in xs], dtype=np.float32), model=None, verbose=False)
        report = lk.evaluate_model(model, groups, k=1, verbose=False)
        nearest = model.query(model.embeddings[1:2], k=2, verbose=False)["reference_label"].tolist()[1]
        assert (nearest == 0) and report.queries["first_relevant_rank"].iloc[1] == (2 if outsider_first else 1)
        assert report.queries["average_precision"].iloc[1] == (0.5 if outsider_first else 1.0)
        assert report.queries["hits@1"].iloc[1] == (0 if outsider_first else 1)


def brute_force(vectors: np.ndarray, groups: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query AP and hits@k from the full n x n distance matrix, ties by position."""
    v = vectors.astype(np.float64)
    if metric == "euclidean":
        distances = np.linalg.norm(v[:, None] - v[None], axis=-1)
    elif metric == "cosine":
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        distances = 1 - unit @ unit.T
    else:
        distances = -(v @ v.T)
    ap, hits = [], []
    for i in range(len(v)):
        others = [j for j in range(len(v)) if j != i]
        ranked = sorted(others, key=lambda j: (distances[i, j], j))
        relevant = groups[ranked] == groups[i]
        ranks = np.flatnonzero(relevant) + 1
        ap.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        hits.append(int(relevant[:k].sum()))
    return np.array(ap), np.array(hits)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "dot"])
def test_block_ranking_matches_brute_force(monkeypatch, metric):
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(5), [4, 9, 13, 16, 18])  # uneven groups, 60 references
    vectors = (rng.normal(size=(60, 12)) + 0.8 * rng.normal(size=(5, 12))[groups]).astype(np.float32)
    # 7 queries per block: 9 blocks, the last one partial.
    monkeypatch.setattr(evaluation, "RANK_BLOCK_CELLS", 7 * 60)
    model = lk.create(vectors, model=None, metric=metric, verbose=False)
    report = lk.evaluate_model(model, groups, k=(1, 5), verbose=False)
    expected_ap, expected_hits = brute_force(vectors, groups, metric, 5)
    assert report.queries["average_precision"].to_numpy() == pytest.approx(expected_ap, rel=1e-12)
    assert report.queries["hits@5"].tolist() == expected_hits.tolist()
    assert report.metrics["mAP"] == pytest.approx(expected_ap.mean(), rel=1e-12)
    # Random vectors with shared group offsets: clearly better than chance, far from perfect.
    assert 0.3 < report.metrics["mAP"] < 0.95


# ------------------------------------------------------------------------------ real photos


@pytest.fixture(scope="module")
def sample_report(lookalike_cache):
    """evaluate() on the 80 vendored photos: 10 class folders of 8."""
    return lk.evaluate(SAMPLES, verbose=False)


def test_folder_of_class_folders(sample_report, sample_model, sample_classes):
    report = sample_report
    assert report.num_references == 80 and report.num_groups == 10 and report.num_queries == 80
    assert report.model_name == DEFAULT_MODEL and report.metric == "euclidean" and len(report.failures) == 0
    assert set(report.metrics) == {f"{m}@{k}" for m in ("precision", "recall") for k in (1, 4, 10)} | {"mAP", "N-S"}
    assert report.metrics["N-S"] is None  # groups of 8
    for name, value in report.metrics.items():
        if name != "N-S":
            assert 0.0 <= value <= 1.0, (name, value)
    table = report.queries
    assert list(table.columns) == [
        "label",
        "path",
        "group",
        "relevant",
        "average_precision",
        "first_relevant_rank",
        "hits@1",
        "hits@4",
        "hits@10",
    ]
    assert table["group"].tolist() == [Path(p).parent.name for p in table["path"]]
    assert sorted(set(table["group"])) == CLASSES
    assert (table["relevant"] == 7).all()
    for k in (1, 4, 10):
        assert table[f"hits@{k}"].between(0, min(k, 7)).all()
    assert table["average_precision"].between(0, 1).all()
    # The same embeddings through evaluate_model give the same numbers.
    same = lk.evaluate_model(sample_model, sample_classes, verbose=False)
    assert same.metrics == report.metrics


def test_real_embeddings_beat_random_ones(sample_report):
    groups = sample_report.queries["group"].to_numpy()
    random_embeddings = np.random.default_rng(0).normal(size=(80, 512)).astype(np.float32)
    baseline = lk.evaluate_model(lk.create(random_embeddings, model=None, verbose=False), groups, verbose=False)
    # Chance: a random other photo is a class mate 7/79 of the time.
    assert baseline.metrics["precision@1"] < 0.2 and baseline.metrics["mAP"] < 0.2
    assert sample_report.metrics["mAP"] > baseline.metrics["mAP"] + 0.08
    assert sample_report.metrics["precision@1"] > baseline.metrics["precision@1"] + 0.15


def test_html_report_is_self_contained(sample_report, tmp_path):
    path = sample_report.to_html(tmp_path / "report.html", worst=5)
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 5 * 11  # each query and its 10 nearest others
    assert all(s.startswith("data:image/jpeg;base64,") for s in sources)
    thumbnail = Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1])))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) == evaluation.THUMBNAIL_PIXELS
    # Green (class="same") borders for the class mates among the first query's results, red for the rest.
    worst = sample_report.worst(5).iloc[0]
    first_section = page.split("<section>")[1]
    assert first_section.count('class="same"') == worst["hits@10"]
    assert first_section.count('class="other"') == 10 - worst["hits@10"]
    assert f"{worst['average_precision']:.3f}" in first_section and Path(worst["path"]).name in first_section


def test_html_without_image_paths_names_the_references(tmp_path):
    report = lk.evaluate_model(line_model(), LINE_GROUPS, k=2, verbose=False)
    page = report.to_html(tmp_path / "r.html", worst=2).read_text()
    assert "<img" not in page and page.count("<section>") == 2 and '<div class="missing">3</div>' in page


def test_json_report(sample_report, tmp_path):
    text = sample_report.to_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert json.loads(text) == data
    assert data["metrics"] == sample_report.metrics and data["num_groups"] == 10 and data["k"] == [1, 4, 10]
    assert len(data["queries"]) == 80 and set(data["queries"][0]) == set(sample_report.queries.columns)
    assert "queries" not in sample_report.to_dict(queries=False)


def test_dataframe_with_group_and_label_columns(sample_report):
    table = lk.load_images(SAMPLES)
    table["cls"] = [Path(p).parent.name for p in table["path"]]
    table["name"] = [Path(p).stem for p in table["path"]]
    report = lk.evaluate(table, group="cls", label="name", verbose=False)
    assert report.queries["label"].tolist() == table["name"].tolist()
    assert report.metrics == sample_report.metrics


def test_unreadable_and_loose_images_are_left_out(tmp_path, imagegen):
    for group, indices in (("a", (0, 1)), ("b", (8, 9))):
        (tmp_path / group / "nested").mkdir(parents=True)
        for i in indices:
            imagegen.copy_sample(tmp_path / group / "nested" / f"{i}.jpg", i)
    imagegen.write_truncated_jpeg(tmp_path / "a" / "nested" / "00-broken.jpg")  # sorts first: shifts every position
    imagegen.copy_sample(tmp_path / "loose.jpg", 20)
    with pytest.warns(RuntimeWarning, match="1 images directly in .* belong to no group"):
        report = lk.evaluate(tmp_path, k=1, verbose=False)
    assert len(report.failures) == 1 and "00-broken.jpg" in report.failures["source"].iloc[0]
    assert report.num_references == 4
    assert report.queries["group"].tolist() == [Path(p).parents[1].name for p in report.queries["path"]]
    assert report.queries["group"].tolist() == ["a", "a", "b", "b"]


def test_bad_arguments_say_what_is_wrong(sample_model, tmp_path):
    with pytest.raises(TypeError, match="evaluate_model"):
        lk.evaluate(sample_model)
    with pytest.raises(ValueError, match="group="):
        lk.evaluate(pd.DataFrame({"path": ["x.jpg"], "cls": ["a"]}))
    with pytest.raises(ValueError, match="'klass' is not in the dataset"):
        lk.evaluate(pd.DataFrame({"path": ["x.jpg"], "cls": ["a"]}), group="klass")
    with pytest.raises(ValueError, match="sub-folders"):
        lk.evaluate(SAMPLES, group="cls")
    with pytest.raises(FileNotFoundError):
        lk.evaluate(tmp_path / "nowhere")
    (tmp_path / "empty-group").mkdir()
    with pytest.raises(ValueError, match="no images in sub-folders"):
        lk.evaluate(tmp_path)
    with pytest.raises(ValueError, match="expected 80 values"):
        lk.evaluate_model(sample_model, ["a"] * 79)
    with pytest.raises(ValueError, match="missing values"):
        lk.evaluate_model(sample_model, [None] + ["a"] * 79)
    with pytest.raises(ValueError, match="single member"):
        lk.evaluate_model(sample_model, np.arange(80))
    for k in (0, (1, -2), 2.5, True, ()):
        with pytest.raises(ValueError, match="k must be"):
            lk.evaluate_model(sample_model, ["a"] * 80, k=k)


# ------------------------------------------------------------------------------ shared photo sets


@pytest.mark.needs_shared
def test_neardup_ns_follows_the_ukbench_definition(needs_shared):
    """N-S counts the query itself among its top 4; check it against query() on 40 near-duplicate groups."""
    folders = sorted(p for p in (needs_shared / "neardup").iterdir() if p.is_dir())[:40]
    files = [str(f) for folder in folders for f in sorted(folder.glob("*.jpg"))]
    groups = np.array([Path(f).parent.name for f in files])
    model = lk.create(files, verbose=False)
    report = lk.evaluate_model(model, groups, verbose=False)
    top4 = model.query(model.embeddings, k=4, verbose=False)
    per_query = (groups[top4["reference_label"].to_numpy()] == groups[top4["query_label"].to_numpy()]).reshape(-1, 4)
    assert report.metrics["N-S"] == pytest.approx(per_query.sum(axis=1).mean())
    assert report.metrics["N-S"] >= 1.8  # chance is about 1.02
    assert report.metrics["mAP"] > 0.4


# ------------------------------------------------------------------------------ command line


def test_cli_evaluate_reports_the_hand_computed_metrics(tmp_path, capsys):
    """``lookalike evaluate`` on 3 class folders of 3 photos: JSON metrics equal a brute-force computation."""
    from lookalike import cli

    folder = tmp_path / "set"
    for cls in ("hat", "pants", "shoes"):
        (folder / cls).mkdir(parents=True)
        for photo in sorted((SAMPLES / cls).iterdir())[:3]:
            (folder / cls / photo.name).write_bytes(photo.read_bytes())
    html_file = tmp_path / "worst.html"
    code = cli.main(
        ["evaluate", str(folder), "-k", "1", "2", "--metric", "cosine", "--json", "-q", "--html", str(html_file)]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["num_references"] == 9 and data["num_groups"] == 3 and data["k"] == [1, 2]
    files = sorted(str(p) for p in folder.glob("*/*.jpg"))
    vectors = lk.create(files, verbose=False).embeddings
    groups = np.array([Path(f).parent.name for f in files])
    ap, hits1 = brute_force(vectors, groups, "cosine", 1)
    _, hits2 = brute_force(vectors, groups, "cosine", 2)
    assert data["metrics"]["mAP"] == pytest.approx(ap.mean(), rel=1e-9)
    assert data["metrics"]["precision@1"] == pytest.approx(hits1.mean(), rel=1e-9)
    assert data["metrics"]["precision@2"] == pytest.approx(hits2.mean() / 2, rel=1e-9)
    assert data["metrics"]["recall@2"] == pytest.approx(hits2.mean() / 2, rel=1e-9)  # 2 mates each
    assert data["metrics"]["N-S"] is None
    page = html_file.read_text()
    assert page.count("<section>") == 9 and page.count('<img src="data:image/jpeg;base64,') == 9 * 3
    # The text table, and a one-line error for a bad option.
    assert cli.main(["evaluate", str(folder), "-q", "--descriptor", "gem"]) == 0
    text = capsys.readouterr().out
    assert "mAP" in text and "precision@10" in text
    assert cli.main(["evaluate", str(folder), "-q", "--descriptor", "{bad"]) == 1
    assert "neither a preset name nor a JSON object" in capsys.readouterr().err
