"""Edges an independent fault and attack probe found beyond the server (issues 26 and 30), on real files and processes.

Files the project reads (the embedding cache, the cached networks, decisions)
opened only as regular files and checked; EFBIG and other OSErrors in one line
with nothing half-written; arguments checked where they come in; ingest edges;
concurrent ``lookalike decide`` runs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lookalike as lk
from conftest import SAMPLES, without_root_reads

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


def _sql(*statements: str) -> Callable[[Path], None]:
    """Damage done by hand to a cache lookalike made: ``statements`` run on it."""

    def run(path: Path) -> None:
        with sqlite3.connect(path) as db:
            for statement in statements:
                db.execute(statement)

    return run


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_fifo, "it is a FIFO, not a database"),
        (_loop, "it is a loop of symbolic links, not a database"),
        (_sql("DROP TABLE embeddings"), "its table embeddings is missing"),
        (
            _sql("DROP TABLE embeddings", "CREATE TABLE embeddings (fingerprint TEXT, path TEXT, vector BLOB)"),
            "its table embeddings has other columns (fingerprint, path, vector) than lookalike writes",
        ),
        (
            _sql("ALTER TABLE embeddings ADD COLUMN note TEXT"),
            "its table embeddings has other columns (fingerprint, path, size, mtime_ns, width",
        ),
        (
            _sql("DROP TABLE meta", "CREATE TABLE meta (name TEXT, number INTEGER)"),
            "its table meta has other columns (name, number) than lookalike writes",
        ),
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


EMBED_AND_SAY_IF_ONNX_WAS_IMPORTED = """
import json, sys
import lookalike as lk
model = lk.create(sys.argv[1], model=sys.argv[2], verbose=False)
print(json.dumps({"onnx": "onnx" in sys.modules, "embeddings": model.embeddings.tolist()}))
"""


def test_the_networks_pixel_graph_is_built_once_and_a_damaged_one_is_built_again(photos, lookalike_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(
        lookalike_cache / "models",
        cache / "models",
        ignore=lambda _, names: [n for n in names if not n.startswith(NETWORK)],
    )
    env = {**os.environ, "LOOKALIKE_CACHE": str(cache)}

    def embedded() -> dict:
        done = subprocess.run(
            [sys.executable, "-c", EMBED_AND_SAY_IF_ONNX_WAS_IMPORTED, str(photos), NETWORK],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        for stale in cache.glob("embeddings.sqlite*"):  # a fresh embedding cache each time: the network runs
            stale.unlink()
        return json.loads(done.stdout)

    first = embedded()
    assert first["onnx"]  # the graph was built
    (graph,) = (cache / "models").glob("pixels-*.onnx")
    second = embedded()
    assert not second["onnx"]  # read back: onnx is never imported
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    third = embedded()
    assert third["onnx"]  # the damaged file was not trusted
    assert first["embeddings"] == second["embeddings"] == third["embeddings"]
    assert np.allclose(first["embeddings"], lk.create(photos, model=NETWORK, verbose=False).embeddings)


# ------------------------------------------------------------------------------------------------------- decisions


@pytest.fixture(scope="module")
def decided_model(tmp_path_factory, lookalike_cache) -> Path:
    """A saved model of 16 photos with two decisions recorded: the model to copy for each test."""
    folder = tmp_path_factory.mktemp("decided")
    (folder / "photos").mkdir()
    for source in PHOTOS[:16]:
        shutil.copyfile(source, folder / "photos" / f"{source.parent.name}-{source.name}")
    model = lk.create(folder / "photos", model=NETWORK, verbose=False)
    model.mark_keeper(0)
    model.mark_not_duplicate(1, 2)
    model.save(folder / "m.lookalike")
    return folder / "m.lookalike"


def _decisions(model: Path) -> dict:
    return json.loads((model / "decisions.json").read_text())


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d["decisions"][0].pop("time"), "decision 1 has no 'time'"),
        (lambda d: d["decisions"][0].update(time="yesterday"), "decision 1 has a 'time' that is not a number"),
        (lambda d: d["decisions"][1].update(time=True), "decision 2 has a 'time' that is not a number"),
        (lambda d: d["decisions"][1].update(time=float("nan")), "decision 2 has a 'time' that is not a number"),
        (lambda d: d["decisions"][0].update(kind="maybe"), "decision 1 has a 'kind' that is not one of keep, discard"),
        (lambda d: d["decisions"][0].update(paths="a.jpg"), "decision 1 has a 'paths' that is not a list of paths"),
        (lambda d: d["decisions"][0].update(sha256=["00"]), "decision 1 has a 'sha256' that is not a list of SHA-256"),
        (lambda d: d["decisions"][1]["paths"].pop(), "decision 2 names 1 files and 2 digests, not 2"),
        (lambda d: d["decisions"][0].update(tame=1), "decision 1 has fields lookalike does not write (tame)"),
        (lambda d: d["decisions"][0].update(moved_to=3), "decision 1 has a 'moved_to' that is not a path"),
        (lambda d: d["decisions"].append("keep"), "decision 3 is not an object"),
        (lambda d: d.update(version="2"), "its version '2' is not a version number"),
        (lambda d: d.update(decision=[]), 'not an object of "version" and "decisions"'),
    ],
)
def test_malformed_decisions_are_an_error_naming_the_file_wherever_the_model_is_loaded(
    decided_model, tmp_path, edit, problem
):
    model = Path(shutil.copytree(decided_model, tmp_path / "m.lookalike"))
    record = _decisions(model)
    edit(record)
    (model / "decisions.json").write_text(json.dumps(record))
    with pytest.raises(lk.dedup.decisions.DamagedDecisions) as caught:
        lk.load_model(model)
    assert str(caught.value).startswith(f"{model / 'decisions.json'} is damaged ({problem}")
    assert "repair it, or record a decision (lookalike decide)" in str(caught.value)


def test_hand_edited_decisions_are_one_line_in_index_and_query_not_a_traceback(decided_model, tmp_path):
    model = Path(shutil.copytree(decided_model, tmp_path / "m.lookalike"))
    record = _decisions(model)
    record["decisions"][0]["time"] = "yesterday"
    (model / "decisions.json").write_text(json.dumps(record))
    photos = decided_model.parent / "photos"
    for command in (["index", photos, "-o", model, "-q", "--model", NETWORK], ["query", model, PHOTOS[0]]):
        line = one_line(cli(*command))
        assert line.startswith(f"{model / 'decisions.json'} is damaged (decision 1 has a 'time' that is not a number")


@pytest.mark.parametrize(
    ("position", "bit", "problem"),
    [(0, 1, "not JSON"), (None, 5, "decision 1 has no 'time'")],  # '{' -> 'z'; "time" -> "tIme"
    ids=["invalid JSON", "invalid schema"],
)
def test_a_damaged_decisions_file_is_kept_aside_never_replaced_by_decide(
    decided_model, tmp_path, position, bit, problem
):
    model = Path(shutil.copytree(decided_model, tmp_path / "m.lookalike"))
    damaged = bytearray((model / "decisions.json").read_bytes())
    position = damaged.index(b'"time"') + 2 if position is None else position
    damaged[position] ^= 1 << bit
    (model / "decisions.json").write_bytes(bytes(damaged))
    line = one_line(cli("decide", model, "--keep", "3"))
    (aside,) = model.glob("decisions.json.damaged-*")
    assert line.startswith(f"{model / 'decisions.json'} is damaged ({problem}")
    assert line.endswith(f"kept aside as {aside}; nothing was recorded: do it again to start a new decisions.json")
    assert aside.read_bytes() == bytes(damaged)  # kept byte for byte
    assert not (model / "decisions.json").exists()
    again = cli("decide", model, "--keep", "3")
    assert again.returncode == 0, again.stderr
    assert [r["kind"] for r in _decisions(model)["decisions"]] == ["keep"]
    assert aside.read_bytes() == bytes(damaged) and len(list(model.glob("decisions.json.damaged-*"))) == 1


def test_a_writer_of_decisions_keeps_a_file_damaged_since_it_loaded_aside(decided_model, tmp_path):
    model_path = Path(shutil.copytree(decided_model, tmp_path / "m.lookalike"))
    model = lk.load_model(model_path)
    (model_path / "decisions.json").write_text('{"version": 2, "decisions": [{"kind": "keep"}]}')
    model.mark_keeper(5)
    with pytest.raises(
        lk.dedup.decisions.DamagedDecisions, match=r"kept aside as .*decisions\.json\.damaged-"
    ) as caught:
        model.save_decisions(model_path)
    assert caught.value.aside.read_text() == '{"version": 2, "decisions": [{"kind": "keep"}]}'
    assert not (model_path / "decisions.json").exists()


@pytest.mark.parametrize("count", [4, 16])
def test_concurrent_decide_runs_record_every_decision(decided_model, tmp_path, count):
    model = Path(shutil.copytree(decided_model, tmp_path / "m.lookalike"))
    command = [sys.executable, "-m", "lookalike.cli", "decide", str(model), "--keep"]
    runs = [subprocess.Popen([*command, str(label)], stderr=subprocess.PIPE, text=True) for label in range(count)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    saved = lk.load_model(model)
    kept = sorted(r["paths"][0] for r in saved.decisions.records if r["kind"] == "keep")
    assert kept == sorted(saved.references["path"][:count])  # all of them (the keep of 0 was there already)
    assert [r["kind"] for r in saved.decisions.records].count("not-duplicate") == 1


# ----------------------------------------------------------------------------------- EFBIG and other OS errors


@pytest.fixture(scope="module")
def forty(tmp_path_factory, lookalike_cache) -> Path:
    """A saved model of 40 photos (80 kB of embeddings), beside its folder of photos."""
    folder = tmp_path_factory.mktemp("forty")
    (folder / "photos").mkdir()
    for number, source in enumerate(PHOTOS[:40]):
        shutil.copyfile(source, folder / "photos" / f"{number:02d}.jpg")
    lk.create(folder / "photos", model=NETWORK, verbose=False).save(folder / "m.lookalike")
    return folder / "m.lookalike"


def file_size_limit(limit: int):
    """A ``preexec_fn`` limiting the files the child writes to ``limit`` bytes (``ulimit -f``).

    SIGXFSZ is left as it is: Python ignores it from the start, so a write past the limit fails with EFBIG
    instead of the system killing the process mid-write (an exit code of -25 would say it did).
    """

    def limit_writes() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def listing(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` and its size (hidden ones included)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("command", "limit", "written"),
    [
        (["index", "{photos}", "-o", "{out}/new.lookalike", "-q", "--model", NETWORK], 32_000, "new.lookalike"),
        (["index", "{photos}", "-o", "{model}", "-q", "--rebuild", "--model", NETWORK], 32_000, "{model}"),
        (["graph", "{model}", "-k", "39", "-o", "{out}/edges.csv"], 8_000, "edges.csv"),
        (["graph", "{model}", "-k", "39", "-o", "{out}/edges.parquet"], 8_000, "edges.parquet"),
        (["graph", "{model}", "-k", "39", "-o", "{out}/edges.jsonl"], 8_000, "edges.jsonl"),
        (["export", "{model}", "--onnx", "{out}/model.onnx"], 32_000, "model.onnx"),
        (["map", "{model}", "--method", "pca"], 1_000, "{model}/map.npz"),
    ],
    ids=["index", "index over a model", "graph csv", "graph parquet", "graph jsonl", "export onnx", "map"],
)
def test_a_file_size_limit_is_one_line_naming_the_file_and_leaves_nothing_half_written(
    forty, tmp_path, command, limit, written
):
    model = Path(shutil.copytree(forty, tmp_path / "m.lookalike"))
    out = tmp_path / "out"
    out.mkdir()
    places = {"photos": forty.parent / "photos", "model": model, "out": out}
    before = {"model": listing(model), "out": listing(out)}
    done = cli(*(part.format(**places) for part in command), preexec_fn=file_size_limit(limit), timeout=300)
    assert done.returncode == 1, (done.stdout, done.stderr)  # not killed by SIGXFSZ (-25)
    *warnings, error = done.stderr.splitlines()
    assert all(w.startswith("lookalike: warning: the embedding cache") for w in warnings), warnings
    target = written.format(**places) if "{" in written else str(out / written)
    assert error == (
        f"lookalike: error: file too large: writing {target} went past the largest file allowed "
        "(ulimit -f, or the file system's limit)"
    )
    assert {"model": listing(model), "out": listing(out)} == before  # nothing written, nothing half-written
    assert sorted(os.listdir(tmp_path)) == ["m.lookalike", "out"]  # no folder of a save left beside them
    assert len(lk.load_model(model).labels) == 40


def test_files_that_cannot_be_written_are_one_line_naming_them(forty, tmp_path):
    model = Path(shutil.copytree(forty, tmp_path / "m.lookalike"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        for command, target in (
            (["graph", model, "-o", locked / "edges.parquet"], locked / "edges.parquet"),
            (["graph", model, "-o", locked / "edges.csv"], locked / "edges.csv"),
            (["export", model, "--onnx", locked / "model.onnx"], locked / "model.onnx"),
            (
                ["index", forty.parent / "photos", "-o", locked / "m.lookalike", "-q", "--model", NETWORK],
                locked / "m.lookalike",
            ),
        ):
            done = cli(*command, preexec_fn=without_root_reads)
            assert one_line(done) == f"{target}: Permission denied"
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o755)


# --------------------------------------------------------------------------------------- arguments at the edge


def test_options_may_come_anywhere_on_the_command_line(forty, tmp_path):
    photo = forty.parent / "photos" / "03.jpg"
    before = cli("query", forty, photo, "-k", "3", "--json")
    assert before.returncode == 0, before.stderr
    for order in (["query", forty, "-k", "3", photo, "--json"], ["query", "-k", "3", "--json", forty, photo]):
        after = cli(*order)
        assert after.returncode == 0, (order, after.stderr)
        assert json.loads(after.stdout) == json.loads(before.stdout)
    assert len(json.loads(before.stdout)) == 3
    model = Path(shutil.copytree(forty, tmp_path / "m.lookalike"))
    assert cli("decide", "--keep", "4", model, "--not-duplicate", "1", "2").returncode == 0
    assert len(lk.load_model(model).decisions) == 2
    graph = cli("graph", "-k", "2", model, "--json")
    assert graph.returncode == 0 and len(json.loads(graph.stdout)) == 80


def test_a_factory_string_the_photos_cannot_train_is_refused_before_anything_is_embedded(forty, own_cache, tmp_path):
    photos = forty.parent / "photos"
    line = one_line(
        cli("index", photos, "-o", tmp_path / "m", "--method", "IVF99999,Flat", "--model", NETWORK, env=own_cache)
    )
    assert line == (
        "method 'IVF99999,Flat' cannot be trained on 40 vectors: its 99999 inverted lists need at least 99999; "
        "use 'IVF6,Flat' or method 'auto'"
    )
    assert not (Path(own_cache["LOOKALIKE_CACHE"]) / "embeddings.sqlite").exists()  # refused before embedding
    assert not (tmp_path / "m").exists()
    line = one_line(cli("index", photos, "-o", tmp_path / "m", "--method", "ivf-pq", "--model", NETWORK, env=own_cache))
    assert line.startswith("method 'ivf-pq' cannot be trained on 40 vectors: the 256 centroids of each of its 128")
    line = one_line(
        cli("index", photos, "-o", tmp_path / "m", "--method", "IVF4,Flatt", "--model", NETWORK, env=own_cache)
    )
    assert "got 'IVF4,Flatt'" in line
    vectors = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    with pytest.raises(lk.InvalidArgument, match="'IVF64,Flat' cannot be trained on 32 vectors: its 64 inverted lists"):
        lk.create(vectors, model=None, method="IVF64,Flat")
    with pytest.raises(lk.InvalidArgument, match=r"'IVF4,PQ4' cannot be trained on 32 vectors: the 256 centroids"):
        lk.create(vectors, model=None, method="IVF4,PQ4")
    assert lk.create(vectors, model=None, method="IVF4,Flat").summary("dict")["method"] == "IVF4,Flat"


def test_empty_zero_width_complex_and_nan_inputs_are_refused_naming_the_argument(forty, tmp_path, monkeypatch):
    monkeypatch.chdir(forty.parent / "photos")  # a folder of images: '' used to index it
    for empty in ("", " ", [""]):
        with pytest.raises(lk.InvalidArgument, match=r"an empty path \('.*'\) names no file or folder"):
            lk.create(empty, model=NETWORK, verbose=False)
    with pytest.raises(lk.InvalidArgument, match=r"an empty path"):
        lk.load_images("")
    with pytest.raises(
        lk.InvalidArgument, match=r"dataset: embeddings must have at least one value each, got shape \(4, 0\)"
    ):
        lk.create(np.zeros((4, 0)), model=None)
    with pytest.raises(lk.InvalidArgument, match="dataset: embeddings must be real numbers, got complex ones"):
        lk.create(np.ones((4, 3), dtype=complex), model=None)
    complex_column = pd.DataFrame({"vector": [np.ones(3, dtype=complex)] * 4})
    with pytest.raises(lk.InvalidArgument, match="column 'vector': embeddings must be real numbers"):
        lk.create(complex_column, model=None)
    vectors = lk.create(np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32), model=None)
    # An empty query is an error, as for an empty list or DataFrame: nothing was asked (not an empty answer).
    with pytest.raises(lk.InvalidArgument, match=r"query dataset is empty: the array of shape \(0, 8\) has no rows"):
        vectors.query(np.zeros((0, 8)))
    with pytest.raises(lk.InvalidArgument, match="query: embeddings must be real numbers"):
        vectors.query(np.ones((1, 8), dtype=complex))
    images = lk.load_model(forty)
    with pytest.raises(lk.InvalidArgument, match="an empty path"):
        images.query("")
    for pixels, reason in (
        (np.full((64, 64, 3), np.nan), "the image array holds NaN or infinite values"),
        (np.full((64, 64, 3), np.inf, dtype=np.float32), "the image array holds NaN or infinite values"),
        (np.ones((64, 64, 3), dtype=complex), "an image array must hold real numbers, not complex128"),
    ):
        with pytest.raises(lk.ImageError, match=reason), pytest.warns(RuntimeWarning, match=f"skipped: {reason}"):
            images.query(pixels, k=2)
    assert len(images.query(np.full((64, 64, 3), 0.5), k=2)) == 2  # a float image in 0..1 is still one


# ---------------------------------------------------------------------------------------------------- ingest


def test_rows_without_an_id_are_skipped_and_reported_not_the_whole_run(forty, own_cache, tmp_path):
    photos = sorted((forty.parent / "photos").glob("*.jpg"))[:6]
    ids = ["a", "", "c", "d", "", "f"]
    table = tmp_path / "images.csv"
    table.write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in zip(ids, photos, strict=True)))
    done = cli(
        "index", table, "--id-column", "id", "-o", tmp_path / "m", "--model", NETWORK, "-q", "--report", env=own_cache
    )
    assert done.returncode == 0, done.stderr
    assert "indexed 4 images" in done.stdout and "2 skipped" in done.stdout
    assert done.stderr.splitlines() == [
        "skipped 2 of 6 inputs: 2 missing id",
        f"  skipped {photos[1]}: row 1 has no id: its 'id' cell is empty",
        f"  skipped {photos[4]}: row 4 has no id: its 'id' cell is empty",
        f"failure report: {tmp_path / 'm.failures.csv'}",
    ]
    model = lk.load_model(tmp_path / "m")
    assert model.labels.tolist() == ["a", "c", "d", "f"]
    assert model.references["path"].tolist() == [str(photos[i]) for i in (0, 2, 3, 5)]
    report = pd.read_csv(tmp_path / "m.failures.csv", keep_default_na=False)
    assert report["source"].tolist() == [str(photos[1]), str(photos[4])]
    assert report["kind"].tolist() == ["missing id", "missing id"]
    vectors = pd.DataFrame({"id": ["x", None, "z"], "vector": list(np.eye(3, 4, dtype=np.float32))})
    assert lk.create(vectors, label="id", model=None).labels.tolist() == ["x", "z"]


@pytest.mark.parametrize(("mode", "what"), [(0o000, "read"), (0o111, "listed"), (0o444, "entered")])
def test_a_sub_folder_that_cannot_be_read_is_named_by_the_cli(forty, own_cache, tmp_path, mode, what):
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    sources = sorted((forty.parent / "photos").glob("*.jpg"))[:3]
    shutil.copyfile(sources[0], folder / "open.jpg")
    for source in sources[1:]:
        shutil.copyfile(source, folder / "locked" / source.name)
    (folder / "locked" / "deeper").mkdir()
    shutil.copyfile(sources[1], folder / "locked" / "deeper" / "more.jpg")
    (folder / "locked").chmod(mode)
    try:
        done = cli(
            "index",
            folder,
            "-o",
            tmp_path / "m",
            "--model",
            NETWORK,
            "-q",
            env=own_cache,
            preexec_fn=without_root_reads,
        )
    finally:
        (folder / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "indexed 1 images" in done.stdout
    if what == "entered":  # its names can be listed, its files not opened, its sub-folders not walked
        assert done.stderr.splitlines() == [
            f"lookalike: warning: folder {folder / 'locked' / 'deeper'} cannot be read (Permission denied): "
            "its images are left out",
            "skipped 2 of 3 inputs: 2 permission denied",
            *(f"  skipped {folder / 'locked' / source.name}: permission denied" for source in sources[1:]),
        ]
    else:
        assert done.stderr.splitlines() == [
            f"lookalike: warning: folder {folder / 'locked'} cannot be read (Permission denied): its images are left out"
        ]


def test_a_fifo_in_place_of_a_side_file_is_refused_not_waited_on(decided_model, tmp_path):
    model = Path(shutil.copytree(decided_model, tmp_path / "m.lookalike"))
    (model / "decisions.json").unlink()
    os.mkfifo(model / "decisions.json")
    os.mkfifo(model / "map.npz")
    line = one_line(cli("query", model, PHOTOS[0], timeout=60))
    assert line.startswith(f"{model / 'decisions.json'} is damaged (it is not a regular file (a FIFO)")
    line = one_line(cli("decide", model, "--keep", "3", timeout=60))
    (aside,) = model.glob("decisions.json.damaged-*")
    assert aside.is_fifo() and line.endswith(
        f"kept aside as {aside}; nothing was recorded: do it again to start a new decisions.json"
    )
    done = cli("query", model, PHOTOS[0], "-k", "1", timeout=60)
    assert done.returncode == 0
    assert done.stderr.startswith(f"lookalike: warning: {model / 'map.npz'} is not a regular file (a FIFO)")
