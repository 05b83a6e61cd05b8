"""load_images: folders, globs, lists of paths into a table of paths and header metadata; bad files reported."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lookalike as lk
from conftest import CLASSES, SAMPLES
from lookalike.ingest.decode import ImageError, load_rgb

COLUMNS = ["path", "width", "height", "format", "bytes", "mtime"]
ALL_SAMPLES = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))


def test_samples_folder(sample_refs):
    refs = sample_refs
    assert len(ALL_SAMPLES) == 80
    assert refs.columns.tolist() == COLUMNS
    assert len(refs) == 80
    assert refs["path"].tolist() == ALL_SAMPLES  # sorted, the LICENSE file ignored
    assert refs.attrs["failures"] == []
    assert (refs["format"] == "JPEG").all()
    assert refs["width"].dtype == np.int64 and refs["bytes"].dtype == np.int64 and refs["mtime"].dtype == np.float64
    for row in refs.sample(5, random_state=0).itertuples():
        with Image.open(row.path) as image:
            assert (row.width, row.height) == image.size
        stat = os.stat(row.path)
        assert row.bytes == stat.st_size
        assert row.mtime == stat.st_mtime
    assert sorted({Path(p).parent.name for p in refs["path"]}) == CLASSES


def test_recursive_or_not():
    assert len(lk.load_images(SAMPLES, recursive=False)) == 0  # the photos are all in sub-folders
    assert lk.load_images(SAMPLES / "dress", recursive=False)["path"].tolist() == [
        p for p in ALL_SAMPLES if Path(p).parent.name == "dress"
    ]


def test_glob_and_single_file_and_list():
    hats = lk.load_images(str(SAMPLES / "*" / "*.jpg"))
    assert hats["path"].tolist() == ALL_SAMPLES
    some = lk.load_images(str(SAMPLES / "h*"))  # a glob matching a folder walks it
    assert some["path"].tolist() == [p for p in ALL_SAMPLES if Path(p).parent.name == "hat"]
    one = lk.load_images(ALL_SAMPLES[7])
    assert one["path"].tolist() == [ALL_SAMPLES[7]]
    chosen = [ALL_SAMPLES[5], ALL_SAMPLES[2], Path(ALL_SAMPLES[40])]
    listed = lk.load_images(chosen)
    assert listed["path"].tolist() == [str(p) for p in chosen]  # the order given is kept
    mixed = lk.load_images([SAMPLES / "hat", ALL_SAMPLES[0]])
    assert len(mixed) == 9


def test_random_order_permutes_the_same_rows(sample_refs):
    orders = [lk.load_images(SAMPLES, random_order=True)["path"].tolist() for _ in range(3)]
    for order in orders:
        assert sorted(order) == ALL_SAMPLES
    assert any(order != ALL_SAMPLES for order in orders)  # 3 sorted shuffles of 80 rows: chance 1/80!^3
    shuffled = lk.load_images(SAMPLES, random_order=True)
    assert shuffled.index.tolist() == list(range(80))
    merged = shuffled.sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, sample_refs.reset_index(drop=True), check_like=False)


def test_with_path_false_names_the_column_image():
    refs = lk.load_images(SAMPLES / "shoes", with_path=False)
    assert refs.columns.tolist() == ["image", *COLUMNS[1:]]
    assert len(refs) == 8
    assert all(Path(p).is_file() for p in refs["image"])


def test_bad_files_are_skipped_and_reported(tmp_path, bad_files, imagegen):
    folder = bad_files["zero"].parent
    good = [imagegen.copy_sample(folder / "good1.jpg", 0), imagegen.copy_sample(folder / "good2.jpg", 10)]
    (folder / "notes.txt").write_text("not an image extension: not looked at")
    refs = lk.load_images(folder)
    # The truncated JPEG has a sound header: listing does not decode, so it is kept here
    # (create reports it when decoding fails).
    assert sorted(refs["path"]) == sorted(map(str, [*good, bad_files["truncated"]]))
    failures = refs.attrs["failures"]
    assert sorted(f["path"] for f in failures) == sorted(str(bad_files[k]) for k in ("zero", "text", "bomb"))
    reasons = {Path(f["path"]).name: f["reason"] for f in failures}
    assert "0 bytes" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "decompression-bomb" in reasons["bomb.png"]


def test_strict_mode_raises_naming_the_file(bad_files):
    folder = bad_files["zero"].parent
    with pytest.raises(ImageError) as excinfo:
        lk.load_images(folder, ignore_failure=False)
    assert excinfo.value.source in {str(bad_files[k]) for k in ("zero", "text", "bomb")}
    assert excinfo.value.source in str(excinfo.value)
    with pytest.raises(ImageError, match="0 bytes") as excinfo:
        lk.load_images([bad_files["zero"]], ignore_failure=False)
    assert str(bad_files["zero"]) in str(excinfo.value)


def test_unreadable_file_is_reported(tmp_path, imagegen):
    good = imagegen.copy_sample(tmp_path / "good.jpg", 1)
    secret = imagegen.copy_sample(tmp_path / "secret.jpg", 2)
    with imagegen.unreadable(secret):
        refs = lk.load_images(tmp_path)
    assert refs["path"].tolist() == [str(good)]
    assert refs.attrs["failures"] == [{"path": str(secret), "kind": "permission denied", "reason": "permission denied"}]


def test_empty_folder_and_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    refs = lk.load_images(empty)
    assert len(refs) == 0 and refs.columns.tolist() == COLUMNS and refs.attrs["failures"] == []
    with pytest.raises(ValueError, match="dataset is empty"):
        lk.create(empty, verbose=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "readme.txt").write_text("hello")
    (docs / "data.csv").write_text("a,b\n1,2\n")
    assert len(lk.load_images(docs)) == 0
    with pytest.raises(ValueError, match="no images found"):
        lk.create(docs, verbose=False)


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        lk.load_images(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        lk.load_images([ALL_SAMPLES[0], tmp_path / "missing.jpg"])
    with pytest.raises(FileNotFoundError):
        lk.create(tmp_path / "nope", verbose=False)
    assert len(lk.load_images(str(tmp_path / "*.jpg"))) == 0  # a glob that matches nothing is just empty


def test_listing_reads_headers_only(tmp_path, request):
    """2,000 files are listed with their sizes while decoding pixels is made impossible."""
    photo = Path(ALL_SAMPLES[0])
    with Image.open(photo) as image:
        size = image.size
    for i in range(2000):
        sub = tmp_path / f"d{i % 10}"
        sub.mkdir(exist_ok=True)
        os.link(photo, sub / f"{i:04d}.jpg")
    forbidden = request.getfixturevalue("forbid_decoding")
    with pytest.raises(forbidden):
        load_rgb(photo)  # decoding really is impossible now
    refs = lk.load_images(tmp_path)
    assert len(refs) == 2000
    assert refs.attrs["failures"] == []
    assert set(zip(refs["width"], refs["height"], strict=True)) == {size}
    assert refs["path"].is_monotonic_increasing
