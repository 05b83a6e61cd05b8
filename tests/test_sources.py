"""Every way to name the images: folder, glob, list, DataFrame, and CSV/TSV/parquet/txt tables of paths or URLs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lookalike as lk
from conftest import SAMPLES, without_root_reads
from imageserver import ImageServer
from lookalike.ingest.sources import read_table

HATS = sorted(str(p) for p in (SAMPLES / "hat").glob("*.jpg"))
IDS = [f"{i:03d}" for i in range(7, 7 + len(HATS))]  # "007", "008"...: numbers to pandas, names to the user


def write_tables(folder, table: pd.DataFrame) -> dict[str, str]:
    """``table`` as CSV, TSV and parquet files in ``folder``."""
    files = {"csv": folder / "images.csv", "tsv": folder / "images.tsv", "parquet": folder / "images.parquet"}
    table.to_csv(files["csv"], index=False)
    table.to_csv(files["tsv"], index=False, sep="\t")
    table.to_parquet(files["parquet"], index=False)
    return {kind: str(path) for kind, path in files.items()}


def test_every_source_kind_gives_the_same_model(tmp_path):
    table = pd.DataFrame({"id": IDS, "path": HATS, "caption": ["a hat"] * len(HATS)})
    (tmp_path / "images.txt").write_text("# hats\n\n" + "\n".join(HATS) + "\n")
    sources = {
        "folder": SAMPLES / "hat",
        "glob": str(SAMPLES / "hat" / "*.jpg"),
        "list": HATS,
        "txt": str(tmp_path / "images.txt"),
        "dataframe": table,
        **write_tables(tmp_path, table),
    }
    reference = lk.create(HATS, verbose=False)
    for kind, source in sources.items():
        with_ids = isinstance(source, pd.DataFrame) or kind in ("csv", "tsv", "parquet")
        model = lk.create(source, label="id" if with_ids else None, verbose=False)
        assert model.references["path"].tolist() == HATS, kind
        np.testing.assert_array_equal(model.embeddings, reference.embeddings, err_msg=kind)
        assert model.labels.tolist() == (IDS if with_ids else list(range(len(HATS)))), kind
        assert model.failures.empty, kind
        if with_ids:
            assert model.references["caption"].tolist() == ["a hat"] * len(HATS), kind  # metadata travels along


def test_ids_stay_text_through_query_save_and_load(tmp_path):
    ids = ["007", "0", "1e3", "12.50", "+4", "x"]  # each would become a number, or lose characters, if parsed
    pd.DataFrame({"id": ids, "file": HATS[: len(ids)]}).to_csv(tmp_path / "t.csv", index=False)
    model = lk.create(str(tmp_path / "t.csv"), label="id", feature="file", verbose=False)
    assert model.labels.tolist() == ids
    assert model.query(HATS[0], k=1)["reference_label"].tolist() == ["007"]
    model.save(tmp_path / "m")
    assert lk.load_model(tmp_path / "m").labels.tolist() == ids
    assert lk.load_images(str(tmp_path / "t.csv"), label="id")["id"].tolist() == ids


def test_a_table_mixing_local_paths_and_urls(tmp_path):
    files = {"remote.jpg": Path(HATS[1]).read_bytes()}
    with ImageServer(files) as server:
        table = pd.DataFrame(
            {
                "id": ["a", "b", "c", "d"],
                "image": [HATS[0], server.url("img/remote.jpg"), None, str(tmp_path / "missing.jpg")],
            }
        )
        table.to_csv(tmp_path / "mixed.tsv", sep="\t", index=False)
        model = lk.create(str(tmp_path / "mixed.tsv"), label="id", verbose=False)
    assert model.labels.tolist() == ["a", "b"]
    assert model.references["image"].tolist() == [HATS[0], server.url("img/remote.jpg")]  # the URL, not the cache
    np.testing.assert_allclose(model.embeddings[1], model.extract_features(HATS[1], verbose=False)[0], atol=1e-5)
    assert model.failures.to_dict("records") == [
        {"id": "c", "source": "(empty)", "kind": "missing value", "reason": "no path or URL (empty value)"},
        {"id": "d", "source": str(tmp_path / "missing.jpg"), "kind": "file not found", "reason": "file not found"},
    ]


def test_the_url_column_is_found_or_named(tmp_path):
    urls = pd.DataFrame({"id": ["1"], "title": ["red hat"], "link": ["http://127.0.0.1:9/a.jpg"]})
    urls.to_csv(tmp_path / "urls.csv", index=False)
    found = lk.load_images(str(tmp_path / "urls.csv"), label="id", download={"retries": 0}, verbose=False)
    assert found.empty  # "link" was taken as the images (only it holds URLs); port 9 refuses the connection
    assert [f["id"] for f in found.attrs["failures"]] == ["1"]
    assert found.attrs["failures"][0]["reason"].startswith("connection failed")
    paths = pd.DataFrame({"id": ["1"], "title": ["red hat"], "where": [HATS[0]]})
    paths.to_csv(tmp_path / "paths.csv", index=False)
    with pytest.raises(ValueError, match=r"several columns could hold the images \['title', 'where'\]"):
        lk.create(str(tmp_path / "paths.csv"), label="id")
    with pytest.raises(
        ValueError, match=r"feature column 'url' is not in the dataset; its columns are \['id', 'title', 'where'\]"
    ):
        lk.create(str(tmp_path / "paths.csv"), label="id", feature="url")
    assert lk.create(str(tmp_path / "paths.csv"), label="id", feature="where", verbose=False).labels.tolist() == ["1"]


def test_unreadable_tables_name_the_file(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="cannot read the table .*broken.parquet"):
        lk.create(str(tmp_path / "broken.parquet"))
    (tmp_path / "empty.csv").write_text("id,path\n")
    with pytest.raises(ValueError, match="the table .*empty.csv has no rows"):
        lk.load_images(str(tmp_path / "empty.csv"))
    with pytest.raises(FileNotFoundError, match="no such table file"):
        read_table(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="is a table of images: pass it alone"):
        lk.load_images([str(tmp_path / "empty.csv"), HATS[0]])


def test_a_fifo_named_like_an_image_is_reported_not_waited_on(tmp_path, lookalike_cache):
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted(SAMPLES.rglob("*.jpg"))[:3]:
        shutil.copyfile(source, folder / source.name)
    os.mkfifo(folder / "pipe.jpg")  # opening it would block until a writer comes
    script = f"import lookalike as lk; m = lk.create({str(folder)!r}, verbose=False); print(m.failures.to_json())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout)
    assert list(failures["kind"].values()) == ["not a regular file"]
    assert "not a regular file (a FIFO)" in next(iter(failures["reason"].values()))


def test_an_unreadable_sub_folder_is_named_in_a_warning(tmp_path, lookalike_cache):
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    sources = sorted(SAMPLES.rglob("*.jpg"))[:3]
    shutil.copyfile(sources[0], folder / "open.jpg")
    for source in sources[1:]:
        shutil.copyfile(source, folder / "locked" / source.name)
    os.chmod(folder / "locked", 0)
    os.chmod(tmp_path, 0o755)
    script = (
        "import warnings, lookalike.ingest.sources\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    files = lookalike.ingest.sources.list_image_files({str(folder)!r})\n"
        "print(len(files)); print([str(w.message) for w in caught])\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, preexec_fn=without_root_reads
        )
    finally:
        os.chmod(folder / "locked", 0o755)
    assert done.returncode == 0, done.stderr
    count, warnings_shown = done.stdout.splitlines()
    assert count == "1"
    assert "locked cannot be read (Permission denied): its images are left out" in warnings_shown
