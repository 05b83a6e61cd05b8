"""Edges an independent fault and attack probe found beyond the server (issues 26 and 30), on real files and processes.

Files the project reads (the embedding cache, the cached networks, decisions)
opened only as regular files and checked; EFBIG and other OSErrors in one line
with nothing half-written; arguments checked where they come in; ingest edges;
concurrent ``lookalike decide`` runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import lookalike as lk
from conftest import SAMPLES

PHOTOS = sorted(SAMPLES.rglob("*.jpg"))
#: The fastest built-in network: these tests are about files, not embeddings.
NETWORK = "squeezenet_v1.1"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **options) -> subprocess.CompletedProcess:
    """``lookalike ARGS`` in a process of its own (``timeout``: a hang fails the test, it does not stall it)."""
    command = [sys.executable, "-m", "lookalike.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **options)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The one error line of a command that failed as a user's error must: exit 1, no traceback."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("lookalike: error: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr.removeprefix("lookalike: error: ").rstrip("\n")


@pytest.fixture
def photos(tmp_path) -> Path:
    """Eight sample photos in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in PHOTOS[::10]:
        shutil.copyfile(source, folder / f"{source.parent.name}-{source.name}")
    return folder


@pytest.fixture
def own_cache(tmp_path, lookalike_cache) -> dict[str, str]:
    """The environment of a process with an empty embedding cache of its own (the built networks still shared)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "models").symlink_to((lookalike_cache / "models").resolve(), target_is_directory=True)
    return {**os.environ, "LOOKALIKE_CACHE": str(folder)}


# ------------------------------------------------------------------------------------------- the embedding cache


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _loop(path: Path) -> None:
    path.symlink_to(path.name)  # a link to itself


def _dropped_table(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE embeddings")


def _other_columns(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE embeddings")
        db.execute("CREATE TABLE embeddings (fingerprint TEXT, path TEXT, vector BLOB)")


def _extra_column(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE embeddings ADD COLUMN note TEXT")


def _other_meta(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE meta")
        db.execute("CREATE TABLE meta (name TEXT, number INTEGER)")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_fifo, "it is a FIFO, not a database"),
        (_loop, "it is a loop of symbolic links, not a database"),
        (_dropped_table, "its table embeddings is missing"),
        (_other_columns, "its table embeddings has other columns (fingerprint, path, vector) than lookalike writes"),
        (_extra_column, "its table embeddings has other columns (fingerprint, path, size, mtime_ns, width"),
        (_other_meta, "its table meta has other columns (name, number) than lookalike writes"),
    ],
    ids=["fifo", "link loop", "dropped table", "other columns", "an extra column", "other meta"],
)
def test_an_embedding_cache_that_is_not_ours_is_moved_aside_and_rebuilt(photos, own_cache, tmp_path, damage, reason):
    cache = Path(own_cache["LOOKALIKE_CACHE"]) / "embeddings.sqlite"
    if damage not in (_fifo, _loop):  # a cache lookalike made, then changed by hand
        assert cli("index", photos, "-o", tmp_path / "first", "-q", "--model", NETWORK, env=own_cache).returncode == 0
        for journal in (cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")):
            journal.unlink(missing_ok=True)  # the first run checkpointed: what is left is in the database
    damage(cache)
    done = cli("index", photos, "-o", tmp_path / "m", "-q", "--model", NETWORK, "--json", env=own_cache)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["embedded"] == 8
    (warning,) = done.stderr.splitlines()
    assert warning.startswith(f"lookalike: warning: the embedding cache {cache} is damaged ({reason}"), warning
    assert "moved to embeddings.sqlite.damaged-" in warning and warning.endswith("and rebuilt")
    (aside,) = cache.parent.glob("embeddings.sqlite.damaged-*")
    assert aside.is_symlink() or aside.is_fifo() or aside.stat().st_size > 0  # kept as it was, to look at
    again = cli("index", photos, "-o", tmp_path / "m2", "-q", "--model", NETWORK, "--json", env=own_cache)
    assert again.returncode == 0 and again.stderr == ""
    assert json.loads(again.stdout)["from_cache"] == 8  # the rebuilt cache serves the next run


def test_a_fifo_in_place_of_the_caches_journal_is_removed_not_waited_on(photos, own_cache, tmp_path):
    cache = Path(own_cache["LOOKALIKE_CACHE"]) / "embeddings.sqlite"
    assert cli("index", photos, "-o", tmp_path / "first", "-q", "--model", NETWORK, env=own_cache).returncode == 0
    wal = cache.with_name(cache.name + "-wal")
    wal.unlink(missing_ok=True)
    os.mkfifo(wal)
    done = cli("index", photos, "-o", tmp_path / "m", "-q", "--model", NETWORK, "--json", env=own_cache)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["from_cache"] == 8  # the database itself was whole
    assert (
        done.stderr == f"lookalike: warning: the embedding cache {cache} had a FIFO as embeddings.sqlite-wal: removed\n"
    )
    assert not wal.is_fifo()


@pytest.mark.parametrize("which", ["onnx", "json"])
def test_a_fifo_in_place_of_a_cached_network_is_rebuilt_not_waited_on(photos, lookalike_cache, tmp_path, which):
    cache = tmp_path / "cache"
    shutil.copytree(
        lookalike_cache / "models",
        cache / "models",
        ignore=lambda _, names: [n for n in names if not n.startswith(NETWORK)],
    )
    network = cache / "models" / f"{NETWORK}.{which}"
    network.unlink(missing_ok=True)
    os.mkfifo(network)
    env = {**os.environ, "LOOKALIKE_CACHE": str(cache)}
    done = cli("index", photos, "-o", tmp_path / "m", "-q", "--model", NETWORK, env=env)
    assert done.returncode == 0, done.stderr
    assert network.is_file() and not network.is_fifo()
    expected = lk.create(photos, model=NETWORK, verbose=False)
    assert (lk.load_model(tmp_path / "m").embeddings == expected.embeddings).all()
