"""Fixtures of the server tests: real uvicorn servers on 127.0.0.1, serving saved models.

Imported by the ``test_server_*`` modules (``from server_fixtures import *``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lookalike as lk
from lookalike.server.runner import start_in_thread

__all__ = ["DUPLICATED", "SAMPLE_PHOTOS", "cli_server", "saved_model", "server", "small_folder"]

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "clothing"
SAMPLE_PHOTOS = sorted(SAMPLES.rglob("*.jpg"))
#: A reference photo whose file is copied twice into the small model: an exact-duplicate pair.
DUPLICATED = SAMPLE_PHOTOS[3]


@pytest.fixture(scope="module")
def saved_model(sample_model, tmp_path_factory) -> Path:
    """The session's ``sample_model`` (80 vendored photos) saved to a temporary directory."""
    path = tmp_path_factory.mktemp("served") / "sample.lookalike"
    sample_model.save(path)
    return path


@pytest.fixture(scope="module")
def server(saved_model, tmp_path_factory):
    """``lookalike``'s explorer on the saved sample model, in a uvicorn thread on a free loopback port."""
    thumbs = tmp_path_factory.mktemp("thumbnails")
    with start_in_thread(lk.load_model(saved_model), thumbnail_dir=thumbs) as running:
        running.thumbnail_dir = thumbs
        yield running


@contextlib.contextmanager
def cli_server(model: Path, *options: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``lookalike serve MODEL --port 0 -q OPTIONS`` in a process of its own: (the process, the page's URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", str(model), "--port", "0", "-q", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "lookalike explorer on http://" in line, line or process.stderr.read()
        yield process, line.split(" on ")[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=30)


def small_folder(root: Path) -> Path:
    """Six photos: an EXIF-rotated test card, a file copied twice (distance 0), three other samples."""
    from conftest import pattern_rgb, write_exif_rotated_jpeg

    folder = root / "small"
    folder.mkdir()
    write_exif_rotated_jpeg(folder / "rotated.jpg", pattern_rgb(120, 80), orientation=6)
    shutil.copyfile(DUPLICATED, folder / "copy-a.jpg")
    shutil.copyfile(DUPLICATED, folder / "copy-b.jpg")
    for number, source in enumerate(SAMPLE_PHOTOS[40:43]):
        shutil.copyfile(source, folder / f"other-{number}.jpg")
    return folder
