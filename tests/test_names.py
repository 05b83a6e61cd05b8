"""File names that are not valid UTF-8: indexed, queried, deduplicated, saved and loaded with their exact bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lookalike as lk
from conftest import SAMPLES
from lookalike.ingest.names import escaped, restored, storable, text_column

SOURCES = sorted(SAMPLES.rglob("*.jpg"))[:4]


@pytest.fixture()
def latin1_folder(tmp_path) -> Path:
    """Four photos, two named in Latin-1 (b"caf\\xe9-N.jpg", not UTF-8) and one of those copied again."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [b"caf\xe9-0.jpg", b"caf\xe9-1.jpg", b"plain-2.jpg", b"plain-3.jpg"]
    for source, name in zip(SOURCES, names, strict=True):
        shutil.copyfile(source, os.path.join(os.fsencode(folder), name))
    shutil.copyfile(SOURCES[0], os.path.join(os.fsencode(folder), b"copy\xff.jpg"))
    return folder


def test_names_round_trip_exactly_and_show_escaped():
    name = os.fsdecode(b"/photos/caf\xe9 \\x41.jpg")  # an undecodable byte, and a real backslash sequence
    assert escaped(name) == "/photos/caf\\xe9 \\x41.jpg"
    table = text_column([name, "plain.jpg"]).to_frame("path")
    stored, columns = storable(table)
    assert columns == ["path"] and stored["path"][0] == b"/photos/caf\xe9 \\x41.jpg"
    assert restored(stored, columns)["path"].tolist() == [name, "plain.jpg"]


def test_a_folder_with_names_that_are_not_utf8_indexes_and_queries(latin1_folder, lookalike_cache):
    model = lk.create(latin1_folder, verbose=False)
    assert len(model.labels) == 5 and len(model.failures) == 0
    paths = [os.fsencode(p) for p in model.references["path"]]
    assert os.path.join(os.fsencode(latin1_folder), b"caf\xe9-0.jpg") in paths
    query = os.fsdecode(os.path.join(os.fsencode(latin1_folder), b"caf\xe9-0.jpg"))
    nearest = model.query(query, k=2, verbose=False)
    assert os.fsencode(model.references["path"][nearest["reference_label"][0]]).endswith(b"caf\xe9-0.jpg")
    assert nearest["distance"].tolist()[:2] == pytest.approx([0.0, 0.0], abs=1e-5)  # itself and its copy
    again = lk.create(latin1_folder, verbose=False)  # the embedding cache keys the exact bytes
    assert again.build_stats["from_cache"] == 5
    np.testing.assert_array_equal(again.embeddings, model.embeddings)


def test_dedup_reports_those_names_escaped_and_moves_the_exact_files(latin1_folder, lookalike_cache, tmp_path):
    command = [sys.executable, "-m", "lookalike.cli", "dedup", str(latin1_folder), "--json", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(Path(r["path"]).name for r in rows) == ["caf\\xe9-0.jpg", "copy\\xff.jpg"]
    moved = tmp_path / "moved"
    done = subprocess.run(command[:-2] + ["--move-to", str(moved), "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert os.listdir(os.fsencode(moved)) != [] and len(os.listdir(os.fsencode(latin1_folder))) == 4


def test_the_explorer_lists_those_names_escaped_and_shows_their_thumbnails(latin1_folder, lookalike_cache, tmp_path):
    import httpx

    from lookalike.server.runner import start_in_thread

    model = lk.create(latin1_folder, verbose=False)
    with start_in_thread(model, thumbnail_dir=tmp_path / "thumbs") as running:
        listed = httpx.get(f"{running.api}/references", timeout=60).json()["items"]
        names = sorted(Path(item["path"]).name for item in listed)
        assert names == ["caf\\xe9-0.jpg", "caf\\xe9-1.jpg", "copy\\xff.jpg", "plain-2.jpg", "plain-3.jpg"]
        for item in listed:
            thumbnail = httpx.get(f"{running.api}/references/{item['index']}/thumbnail", timeout=60)
            assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"


def test_those_names_survive_save_load_and_the_cli(latin1_folder, lookalike_cache, tmp_path):
    model = lk.create(latin1_folder, verbose=False)
    model.save(tmp_path / "m.lookalike")
    loaded = lk.load_model(tmp_path / "m.lookalike")
    assert [os.fsencode(p) for p in loaded.references["path"]] == [os.fsencode(p) for p in model.references["path"]]
    query = loaded.references["path"][0]
    assert loaded.query(query, k=1, verbose=False)["distance"][0] == pytest.approx(0.0, abs=1e-5)
    out = tmp_path / "cli.lookalike"
    indexed = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "index", str(latin1_folder), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert indexed.returncode == 0, indexed.stderr
    image = os.path.join(os.fsencode(latin1_folder), b"caf\xe9-1.jpg")
    queried = subprocess.run(
        [
            os.fsencode(sys.executable),
            b"-m",
            b"lookalike.cli",
            b"query",
            os.fsencode(out),
            image,
            b"-k",
            b"1",
            b"--json",
        ],
        capture_output=True,
        timeout=300,
    )
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)[0]["distance"] == pytest.approx(0.0, abs=1e-5)
